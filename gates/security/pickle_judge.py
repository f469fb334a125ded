"""Pickle findings: what the symbolic machine's record of a stream means for a model.

`gates.security.pickle_vm` reads the opcodes and records what each stream does
(`gates.security.pickle_record`); this module judges that record with the `CallablePolicy` of
`gates.security.callables` and makes the findings. Nothing here reads an opcode.

What it catches
    SEC-PICKLE-001 CRITICAL  a reachable callable is dangerous (exec, shells, import machinery,
                             trampolines, nested deserializers, file and network effects...),
                             as judged by `gates.security.callables`.
    SEC-PICKLE-002 HIGH      a callable the pickle *calls* while loading (REDUCE, NEWOBJ,
                             INST/OBJ, or handed as an argument to a call, e.g. the class
                             of copyreg._reconstructor) that is not on the allowlist of model
                             constructors; or one it only *stores* (an attribute value, a
                             list element: sklearn's score_func, pooling_func) that is not in
                             the safe-to-reference tier (functions and classes of numpy,
                             scipy, pandas, scikit-learn, xgboost, lightgbm...). The message
                             says which, and the `allow_callables` entry that would accept it.
    SEC-PICKLE-003 CRITICAL  a callable that cannot be named offline: `STACK_GLOBAL` fed by a
                             value computed at load time (a call result, not a constant
                             string), `EXT1/2/4` extension-registry codes, or a call whose
                             callee is itself the result of a call or a persistent id.
    SEC-PICKLE-004 HIGH      the stream cannot be fully resolved (truncated, unknown opcode,
                             stack underflow, missing memo entry, joblib array whose size
                             cannot be computed), or joblib array bytes that also parse as a
                             long run of opcodes. Never a pass; every callable seen before the
                             break is still judged and reported.
    SEC-PICKLE-005 HIGH      Python code embedded by value (cloudpickle `_make_function`,
                             `_builtin_type('CodeType')`, `types.CodeType`, dill
                             `_create_code`, `marshal.loads` payloads). The function names,
                             `co_names` and short string constants are read from the constants
                             in the stream, never by building a code object. CRITICAL when a
                             code object uses a dangerous name (`system`, `popen`, `exec`,
                             `eval`, `__import__`, `urlopen`, `socket`, `subprocess`, `open`,
                             `remove`, `rmtree`, `getattr`, ...) or the pickle calls an embedded
                             function while loading.
    SEC-PICKLE-006 LOW       bytes after the last STOP that are not another pickle (skipped
                             with `allow_trailing=True`, e.g. legacy torch storages).
    SEC-PICKLE-007 HIGH      `BUILD`/`SETITEM`/`APPEND`/`ADDITEMS` applied to a module-level
                             object (a class or function named by `GLOBAL`): monkey-patching at
                             load time, which no real model does.
    SEC-LIMIT-001  HIGH      a bound was hit (`Limits.max_pickle_ops`, `max_pickle_values`,
                             time budget); the evidence names the limit. The stream stops.

Each callable is judged where it is referenced, whether or not it is called, and whether its
result is later popped or `BUILD`-ed: a dangerous one at once, an unknown one when the stream
has shown whether it calls it (judged as a constructor) or only stores it (judged as a
reference, at the end of the stream). One finding per distinct (callable, rule) per stream,
with evidence {callable, opcode, offset (byte position), stream index, protocol}. Dotted names
(`os.path.join`, proto-4 attribute chains) and `getattr(x, "name")` chains are judged as a
whole.

joblib array bytes read as `pickle.load` would read them are judged like the rest of the
stream when they run cleanly or name a plausible callable; for object arrays (a nested stream
that the plain reading sees with the outer memo) only their dangerous callables count, the
rest is memo cross-talk, not a finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gates.base import Finding, Severity
from gates.security import rules
from gates.security.callables import CallablePolicy
from gates.security.common import Limits, Location
from gates.security.pickle_record import (
    Broke,
    CodeObject,
    CodeTypeNamed,
    Event,
    Global,
    Invoked,
    LimitHit,
    ModuleLoaded,
    ModuleObjectMutated,
    Named,
    Paused,
    PlainReading,
    Site,
    Stopped,
    StreamReading,
    StreamRecord,
    Unnamed,
    UnnamedCause,
)
from gates.security.pickle_vm import read_pickle

# Names a code object may use that turn "embedded code" into "embedded attack".
DANGEROUS_CODE_NAMES = frozenset({
    "system", "popen", "Popen", "spawnv", "spawnve", "spawnl", "spawnlp", "execv", "execve",
    "execl", "execlp", "execvp", "fork", "forkpty", "exec", "eval", "compile", "execfile",
    "__import__", "import_module", "urlopen", "urlretrieve", "socket", "create_connection",
    "subprocess", "check_output", "check_call", "getoutput", "getstatusoutput", "pty",
    "open", "remove", "unlink", "rmtree", "rmdir", "removedirs", "getattr", "setattr",
    "delattr", "__builtins__", "__subclasses__", "__globals__", "ctypes", "requests", "marshal",
})  # fmt: skip

_UNNAMED_MESSAGES: dict[UnnamedCause, str] = {
    UnnamedCause.COMPUTED_GLOBAL: "callable name computed at load time (STACK_GLOBAL fed by "
    "values that are not constant strings)",
    UnnamedCause.EXTENSION: "extension registry code: the callable cannot be resolved offline",
    UnnamedCause.OPAQUE_CALLEE: "pickle calls a value only known at load time (persistent id, "
    "extension code or buffer)",
    UnnamedCause.COMPUTED_CALLEE: "pickle calls a value computed at load time (the callable "
    "cannot be named offline)",
    UnnamedCause.TYPE_NAME: "type name computed at load time",
    UnnamedCause.MODULE_NAME: "module name computed at load time",
    UnnamedCause.ATTRIBUTE_NAME: "attribute name computed at load time",
}


@dataclass
class PickleReport:
    findings: list[Finding] = field(default_factory=list)
    streams: int = 0
    callables: list[str] = field(default_factory=list)
    code_objects: list[CodeObject] = field(default_factory=list)
    trailing_bytes: int = 0
    persistent_ids: int = 0
    built: list[str] = field(default_factory=list)  # callables whose results got BUILD state


def analyze_pickle(
    data: bytes,
    where: Location,
    limits: Limits,
    policy: CallablePolicy,
    *,
    allow_trailing: bool = False,
    joblib_arrays: bool = True,
) -> PickleReport:
    """Every pickle stream in `data`, analysed without loading. Never raises on bad input."""
    reading = read_pickle(data, limits, joblib_arrays=joblib_arrays)
    report = PickleReport()
    for stream in reading.streams:
        judge = _StreamJudge(policy, where, stream.record.index)
        judge.judge(stream)
        _commit(report, judge, stream.record, where)
        if isinstance(stream.end, Stopped):
            report.streams += 1
    if reading.trailing_offset is not None:
        report.trailing_bytes = len(data) - reading.trailing_offset
        if not allow_trailing:
            report.findings.append(rules.PICKLE_TRAILING_DATA.finding(
                "trailing data after the last pickle stream", where,
                {"offset": reading.trailing_offset, "trailing_bytes": report.trailing_bytes,
                 "streams": report.streams},
            ))  # fmt: skip
    return report


class _StreamJudge:
    """Replays one stream's record, in order, against the policy: the findings it makes and
    the callables it has seen (`callables` includes those of a judged plain reading)."""

    def __init__(self, policy: CallablePolicy, where: Location, index: int) -> None:
        self.policy = policy
        self.where = where
        self.index = index
        self.findings: dict[tuple[rules.Rule, str], Finding] = {}
        self.callables: dict[str, None] = {}
        # Callables not on the constructor allowlist, waiting to learn whether the stream calls
        # them (judged as constructors) or only stores them (judged as references) at its end.
        self.pending: dict[str, tuple[Global, Site]] = {}
        self.called: set[str] = set()

    def judge(self, stream: StreamReading) -> None:
        """The whole stream: its events, how it ended, then what it only stored."""
        self.replay(stream.record.events)
        end = stream.end
        if isinstance(end, Broke):
            seen = list(self.callables)[:20]
            named = ", ".join(seen) if seen else "none"
            self._emit(
                rules.PICKLE_UNRESOLVED_STREAM,
                f"pickle stream cannot be fully parsed: {end.reason}; callables seen before the "
                f"break: {named}", "<stream>", end.site,
                reason=end.reason, callables_seen=seen,
            )  # fmt: skip
        elif isinstance(end, LimitHit):
            self._emit(
                rules.SCAN_LIMIT,
                f"pickle analysis stopped: {end.limit} limit exceeded ({end.detail})",
                end.limit, end.site, limit=end.limit, detail=end.detail,
            )  # fmt: skip
        self.finish_references(end.site.protocol)

    def replay(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Named):
                self.callables[event.ref.qualified] = None
                self._judge(event.ref, event.site)
            elif isinstance(event, Invoked):
                self._invoked(event.ref, event.site)
            elif isinstance(event, ModuleLoaded):
                self._judge(event.ref, event.site, dangerous_only=True)
            elif isinstance(event, CodeTypeNamed):
                self.callables[event.qualified] = None
            elif isinstance(event, Unnamed):
                message = _UNNAMED_MESSAGES[event.cause]
                self._emit(rules.PICKLE_UNNAMED_CALLABLE, message, event.what, event.site)
            elif isinstance(event, ModuleObjectMutated):
                self._mutated(event)
            else:
                self._plain_reading(event)

    def finish_references(self, protocol: int) -> None:
        """At the end of the stream (or where it broke): what was only stored, never called,
        is judged against the safe-to-reference tier."""
        pending, self.pending = self.pending, {}
        for ref, site in pending.values():
            if self.policy.judge_reference(ref.module, ref.name).tier != "allowed":
                self._unlisted(ref, site, protocol, called=False)

    def _emit(
        self,
        rule: rules.Rule,
        message: str,
        key: str,
        site: Site,
        severity: Severity | None = None,
        **extra: Any,
    ) -> None:
        """One finding per (rule, key) per stream; `key` is the callable unless it is <...>."""
        if (rule, key) in self.findings:
            return
        evidence = {
            **({} if key.startswith("<") else {"callable": key}),
            "opcode": site.opcode,
            "offset": site.offset,
            "stream": self.index,
            "protocol": site.protocol,
            **extra,
        }
        self.findings[(rule, key)] = rule.finding(message, self.where, evidence, severity=severity)

    def _judge(self, ref: Global, site: Site, *, dangerous_only: bool = False) -> None:
        """Dangerous: CRITICAL at once, called or not (model code may call it later).
        Unknown: judged when we know whether the stream calls it (`_invoked`, the end)."""
        verdict = self.policy.judge(ref.module, ref.name)
        if verdict.tier == "dangerous":
            message = f"pickle reaches dangerous callable {ref.qualified}: {verdict.reason}"
            self._emit(rules.PICKLE_DANGEROUS_CALLABLE, message, ref.qualified, site)
        elif verdict.tier == "unknown" and not dangerous_only:
            self.pending.setdefault(ref.qualified, (ref, site))
            if ref.qualified in self.called:
                self._invoked(ref, site)

    def _invoked(self, ref: Global, site: Site) -> None:
        """The stream invokes `ref` while loading: it must be an allowed constructor."""
        self.called.add(ref.qualified)
        entry = self.pending.pop(ref.qualified, None)
        if entry is not None:
            self._unlisted(entry[0], entry[1], site.protocol, called=True)

    def _unlisted(self, ref: Global, named_at: Site, protocol: int, *, called: bool) -> None:
        q = ref.qualified
        how = (
            "calls it while loading"
            if called
            else "stores a reference to it (not called while loading; model code may call it)"
        )
        message = (
            f"pickle reaches {q}, not on the allowlist of model constructors: the pickle {how}; "
            f'to accept it, add allow_callables: ["{q}"] to the policy'
        )
        site = Site(named_at.offset, named_at.opcode, protocol)
        self._emit(
            rules.PICKLE_UNLISTED_CALLABLE, message, q, site,
            called=called, allow_callables_entry=q,
        )  # fmt: skip

    def _mutated(self, event: ModuleObjectMutated) -> None:
        q = event.target.qualified
        message = f"pickle mutates module-level object {q} at load time ({event.opname})"
        self._emit(rules.PICKLE_MODULE_MUTATION, message, q, event.site)

    def _plain_reading(self, event: PlainReading) -> None:
        """joblib array bytes read as opcodes: a long clean run is a polyglot; what the reading
        reaches is judged like the rest (only dangerous callables for object arrays)."""
        reading = event.reading
        if isinstance(reading.end, Paused):
            self._emit(
                rules.PICKLE_UNRESOLVED_STREAM,
                "joblib array bytes also parse as a long run of pickle opcodes (polyglot)",
                "<joblib-array>", event.site,
                reason="array bytes parse as opcodes under pickle.load",
            )  # fmt: skip
        if isinstance(reading.end, Broke) and not reading.record.significant:
            return
        shadow = _StreamJudge(self.policy, self.where, reading.record.index)
        shadow.replay(reading.record.events)
        shadow.finish_references(reading.end.site.protocol)
        for key, hit in shadow.findings.items():
            if not event.object_array or key[0] is rules.PICKLE_DANGEROUS_CALLABLE:
                self.findings.setdefault(key, hit)
                if "callable" in hit.evidence:
                    self.callables[hit.evidence["callable"]] = None


def _commit(
    report: PickleReport, judge: _StreamJudge, record: StreamRecord, where: Location
) -> None:
    report.findings.extend(judge.findings.values())
    for name in judge.callables:
        if name not in report.callables:
            report.callables.append(name)
    for name in record.built:
        if name not in report.built:
            report.built.append(name)
    report.code_objects.extend(record.code_objects)
    report.persistent_ids += record.persistent_ids
    if record.code_objects:
        report.findings.append(_code_finding(record, where))


def _code_finding(record: StreamRecord, where: Location) -> Finding:
    names = sorted({n for entry in record.code_objects for n in entry["names"]})
    dangerous = sorted(DANGEROUS_CODE_NAMES.intersection(names))
    severity = Severity.CRITICAL if dangerous or record.code_called else Severity.HIGH
    evidence = {
        "functions": [entry["function"] for entry in record.code_objects],
        "names": names[:200],
        "dangerous_names": dangerous,
        "called_at_load": record.code_called,
        "offset": record.first_code_offset,
        "stream": record.index,
    }
    message = "pickle embeds Python code (runs at load time)"
    return rules.PICKLE_EMBEDDED_CODE.finding(message, where, evidence, severity=severity)
