"""Report pages people reach from the `gatekeeper.report_url` tag. Read-only, escaped HTML."""

from __future__ import annotations

import html
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse
from sqlalchemy import select

from service.api.deps import SessionDep
from service.errors import NotFound
from service.store.tables import GateResultRow, GateRun

router = APIRouter(tags=["pages"], include_in_schema=False)

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;"
    "text-align:left;vertical-align:top}.passed,.pass{color:#070}.failed,.fail,.error{color:#a00}"
    ".waived,.warn{color:#a60}"
)


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


@router.get("/", response_class=HTMLResponse)
def index(session: SessionDep) -> HTMLResponse:
    runs = session.scalars(select(GateRun).order_by(GateRun.created_at.desc()).limit(50)).all()
    rows = "".join(
        f"<tr><td><a href='/runs/{r.id}'>{r.id[:8]}</a></td><td>{html.escape(r.model_name)}</td>"
        f"<td>{r.model_version}</td><td class='{r.status}'>{r.status}</td><td>{r.trigger}</td>"
        f"<td>{r.created_at:%Y-%m-%d %H:%M:%S}Z</td></tr>"
        for r in runs
    )
    return _page(
        "mlflow-gatekeeper",
        "<h1>mlflow-gatekeeper</h1><p>Latest runs</p><table><tr><th>run</th><th>model</th>"
        f"<th>version</th><th>status</th><th>trigger</th><th>created</th></tr>{rows}</table>",
    )


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _without_secrets(source: str) -> str:
    """A source as shown on a page: no user:password@, no query (presigned URLs sign there)."""
    parsed = urlsplit(source)
    if not parsed.scheme or not parsed.netloc:
        return source
    host = parsed.hostname or ""
    netloc = host + (f":{parsed.port}" if parsed.port else "")
    return urlunsplit((parsed.scheme, netloc, parsed.path, "", ""))


def _datasets_section(datasets: list[Any] | None) -> str:
    """Where each dataset came from: the data under a decision is part of the decision."""
    rows = []
    for item in datasets or []:
        if not isinstance(item, dict):
            continue
        logged = item.get("logged") if isinstance(item.get("logged"), dict) else {}
        rows.append(
            {
                "dataset": item.get("name"),
                "origin": item.get("origin", "error" if item.get("error") else ""),
                "source": _without_secrets(str(item.get("source") or "")),
                "supplied by": "trainer-supplied" if item.get("trainer_supplied") else "",
                "MLflow digest": logged.get("digest", "") if logged else "",
                "sha256": str(item.get("sha256") or "")[:16],
                "rows": item.get("rows"),
                "error": "could not be loaded (see the run's gate messages)"
                if item.get("error")
                else "",
            }
        )
    if not rows:
        return ""
    columns = ["dataset", "origin", "source", "supplied by", "MLflow digest", "sha256", "rows"]
    if any(r["error"] for r in rows):
        columns.append("error")
    return "<h2>Data</h2>" + _table(rows, columns)


def _evidence_tables(evidence: dict[str, Any]) -> str:
    """Per-metric table (performance), per-group tables (fairness), per-feature flip rates
    and Giskard's issues (robustness) from gate evidence."""
    out = ""
    scan = evidence.get("giskard")
    if isinstance(scan, dict) and isinstance(scan.get("issues"), list) and scan["issues"]:
        issues = [i for i in scan["issues"] if isinstance(i, dict)]
        out += "<p><b>Giskard scan</b></p>" + _table(
            issues, ["level", "detector", "features", "metric", "deviation"]
        )
    metrics = evidence.get("metrics")
    if isinstance(metrics, list):
        out += _table(metrics, ["metric", "candidate", "champion", "threshold", "verdict"])
    features = evidence.get("features")
    if isinstance(features, dict):
        for name, detail in features.items():
            if not isinstance(detail, dict):
                continue
            out += (
                f"<p><b>{html.escape(str(name))}</b>: {html.escape(str(detail.get('verdict', '')))}"
            )
            for key in ("demographic_parity_ratio", "equalized_odds_difference", "error_ratio"):
                stat = detail.get(key)
                if isinstance(stat, dict):
                    out += (
                        f" &middot; {key} {html.escape(_cell(stat.get('value')))}"
                        f" (95% CI {html.escape(_cell(stat.get('ci95')))},"
                        f" threshold {html.escape(_cell(stat.get('threshold')))})"
                    )
            out += "</p>"
            groups = detail.get("groups")
            if isinstance(groups, list) and groups:
                columns = [c for c in ("group", "size", "selection_rate", "tpr", "fpr",
                                       "accuracy", "mae", "judged") if c in groups[0]]  # fmt: skip
                out += _table(groups, columns)
    return out


def _waivers_section(decision: dict[str, Any]) -> str:
    """The waivers that let a blocking gate through: who granted which, why, until when."""
    used = {w for entry in decision.get("waived") or [] for w in entry.get("waivers") or []}
    granted = ((decision.get("input") or {}).get("waivers")) or []
    rows = [
        {k: w.get(k) for k in ("id", "gate", "rule_id", "reason", "created_by", "expires_at")}
        for w in granted
        if isinstance(w, dict) and w.get("id") in used
    ]
    if not rows:
        return ""
    columns = ["id", "gate", "rule_id", "reason", "created_by", "expires_at"]
    return "<h3>Waivers applied</h3>" + _table(rows, columns)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: Annotated[str, Path(max_length=36)], session: SessionDep) -> HTMLResponse:
    run = session.get(GateRun, run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    esc = html.escape
    decision = run.decision or {}
    decided = decision.get("gates") or {}
    gates = ""
    for result in run.results:
        findings = "".join(
            f"<li>{esc(str(f.get('severity')))} {esc(str(f.get('rule_id')))}: "
            f"{esc(str(f.get('message')))} ({esc(str(f.get('file') or ''))})</li>"
            for f in result.findings
        )
        report = (
            f"<p><a href='/runs/{esc(run.id)}/reports/{esc(result.gate)}'>Giskard's report</a> "
            "(made in the sandbox; opens isolated)</p>"
            if result.report_html
            else ""
        )
        # what the decision made of the gate (warn mode, a waiver), beside its own status
        verdict = str(decided.get(result.gate, result.status))
        shown = result.status if verdict == result.status else f"{result.status} ({verdict})"
        gates += (
            f"<tr><td>{esc(result.gate)}</td><td class='{esc(verdict)}'>{esc(shown)}"
            f"</td><td>{esc(result.message)}<ul>{findings}</ul>"
            f"{_evidence_tables(result.evidence or {})}{report}</td></tr>"
        )
    deny = "".join(f"<li>{esc(d)}</li>" for d in decision.get("deny", []))
    warn = "".join(f"<li>{esc(w)}</li>" for w in decision.get("warn", []))
    body = (
        f"<h1>{esc(run.model_name)} v{run.model_version}: "
        f"<span class='{esc(run.status)}'>{esc(run.status)}</span></h1>"
        f"<p>run {run.id} &middot; trigger {esc(run.trigger)} &middot; attempt {run.attempt}"
        f" &middot; artifact sha256 {esc(run.artifact_digest or '-')}"
        f" &middot; sandbox: {esc(run.sandbox or 'model not loaded')}</p>"
        + (
            "<p class='error'><b>sandbox: unconfined</b>: the operator ran model code without "
            "isolation (GATEKEEPER_SANDBOX=unconfined)</p>"
            if run.sandbox == "unconfined"
            else ""
        )
        + "<h2>Gates</h2><table><tr><th>gate</th><th>status</th><th>detail</th></tr>"
        f"{gates}</table>{_datasets_section(run.datasets)}"
        f"<h2>Decision</h2><ul>{deny or '<li>nothing denied</li>'}</ul>"
        + (f"<h3>Warnings</h3><ul class='warn'>{warn}</ul>" if warn else "")
        + _waivers_section(decision)
        + (f"<p class='error'>{esc(run.error_message)}</p>" if run.error_message else "")
    )
    return _page(f"{run.model_name} v{run.model_version}", body)


# A report made where the model ran is the model's to shape: served from an opaque origin
# (CSP sandbox without allow-same-origin), so its scripts can neither read this site nor call
# its API, and with no network at all (default-src 'none': no beacon can leave).
REPORT_HEADERS = {
    "Content-Security-Policy": (
        "sandbox allow-scripts; default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src data:; font-src data:; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    # a download, not a page of this site: a script in it could still navigate the tab away
    # carrying what the report shows
    "Content-Disposition": 'attachment; filename="giskard-report.html"',
}


@router.get("/runs/{run_id}/reports/{gate}", response_class=HTMLResponse)
def gate_report(
    run_id: Annotated[str, Path(max_length=36)],
    gate: Annotated[str, Path(max_length=32)],
    session: SessionDep,
) -> HTMLResponse:
    """A gate's own HTML report (Giskard's scan), isolated from this site."""
    row = session.scalar(
        select(GateResultRow).where(GateResultRow.run_id == run_id, GateResultRow.gate == gate)
    )
    if row is None or not row.report_html:
        raise NotFound(f"no report of gate {gate!r} in run {run_id}")
    return HTMLResponse(row.report_html, headers=REPORT_HEADERS)
