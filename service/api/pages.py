"""Report pages people reach from the `gatekeeper.report_url` tag. Read-only, escaped HTML.

They show what `/api/v1` shows a viewer (findings, dataset sources, metrics), so every route
of this router needs a viewer (`deps.get_page_viewer`: a bearer token or the sign-in cookie
of `service/api/signin.py`) unless `GATEKEEPER_PAGES_PUBLIC=true`. Without one the answer is
the sign-in form, status 401, in place of the page: nothing of the run, and the form brings
the person back to the page they asked for.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from sqlalchemy import select

from service.api.deps import PageViewer, ReadSession, get_page_viewer
from service.errors import NotFound, Unauthorized
from service.store import page_sessions
from service.store.auth import Principal
from service.store.tables import GateResultRow, GateRun

_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;"
    "text-align:left;vertical-align:top}.passed,.pass{color:#070}.failed,.fail,.error{color:#a00}"
    ".waived,.warn{color:#a60}nav{float:right}nav form{display:inline}"
)
# Pages carry a viewer's data now: no shared cache may keep one for the next visitor.
_PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "same-origin"}


def _page(
    title: str,
    body: str,
    *,
    viewer: Principal | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    nav = (
        f"<nav>signed in as {html.escape(viewer.name)} ({html.escape(viewer.role)}) "
        "<form method=post action='/signout'><button type=submit>Sign out</button></form></nav>"
        if viewer is not None
        else ""
    )
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{nav}{body}</body></html>",
        status_code=status_code,
        headers={**_PRIVATE, **(headers or {})},
    )


# Where the form may send a person back to: a path of this site and nothing else (no open
# redirect). One leading slash, then only URL path characters: no scheme, no `//host`, no
# backslash (browsers read `/\host` as `//host`), no whitespace or control characters
# (browsers drop a tab or newline inside a URL, so `/<tab>/host` would become `//host`), and no
# query (a `?token=` someone pasted would be echoed back into the form).
_LOCAL_PATH = re.compile(r"/(?!/)[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,500}")


def local_path(target: str | None) -> str:
    """`target` if it is a path on this site other than the sign-in routes, else `/`."""
    if target and _LOCAL_PATH.fullmatch(target) and not target.startswith(("/signin", "/signout")):
        return target
    return "/"


def sign_in_page(
    next_path: str, *, error: str = "", status_code: int = 200, clear_cookie: str | None = None
) -> HTMLResponse:
    """The sign-in form. It names no run, model or dataset: only where it will return to, a
    path the visitor asked for themselves. The token field is never filled in (no echo)."""
    note = f"<p class='error' role='alert'>{html.escape(error)}</p>" if error else ""
    body = (
        "<h1>mlflow-gatekeeper</h1><h2>Sign in</h2>"
        "<p>The report pages need a token with the <b>viewer</b> role or above.</p>"
        f"{note}<form method=post action='/signin'>"
        f"<input type=hidden name=next value='{html.escape(local_path(next_path))}'>"
        "<p><label for=token>API token</label><br>"
        "<input type=password id=token name=token required autocomplete=off autofocus "
        "size=60></p><p><button type=submit>Sign in</button></p></form>"
        "<p>An administrator makes one with "
        "<code>gatekeeper token create --name YOU --role viewer</code>.</p>"
    )
    response = _page(
        "Sign in · mlflow-gatekeeper",
        body,
        status_code=status_code,
        # 401 needs a challenge; Bearer, so no browser opens its own password dialog
        headers={"WWW-Authenticate": 'Bearer realm="gatekeeper"'} if status_code == 401 else None,
    )
    if clear_cookie is not None:
        response.delete_cookie(clear_cookie, path="/")
    return response


class _SignInWhenRefused(APIRoute):
    """Every route of the pages router needs a viewer (the router's dependency); a request
    without one gets the sign-in form, status 401, in place of the page it asked for. One
    place, so a page added later cannot forget it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthorized:
                cookie = page_sessions.cookie_spec(request.app.state.settings).name
                presented = "authorization" in request.headers or cookie in request.cookies
                return sign_in_page(
                    quote(request.url.path),
                    error="Those credentials were not accepted (unknown, revoked or expired): "
                    "sign in again."
                    if presented
                    else "",
                    status_code=401,
                    clear_cookie=cookie if cookie in request.cookies else None,
                )

        return handle


router = APIRouter(
    tags=["pages"],
    include_in_schema=False,
    route_class=_SignInWhenRefused,
    dependencies=[Depends(get_page_viewer)],
)


@router.get("/", response_class=HTMLResponse)
def index(session: ReadSession, viewer: PageViewer) -> HTMLResponse:
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
        viewer=viewer,
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
def run_page(
    run_id: Annotated[str, Path(max_length=36)], session: ReadSession, viewer: PageViewer
) -> HTMLResponse:
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
        status = result.status.replace("_", " ")  # `not_configured` reads "not configured"
        shown = status if verdict == result.status else f"{status} ({verdict})"
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
    return _page(f"{run.model_name} v{run.model_version}", body, viewer=viewer)


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
    "Cache-Control": "no-store",
}


@router.get("/runs/{run_id}/reports/{gate}", response_class=HTMLResponse)
def gate_report(
    run_id: Annotated[str, Path(max_length=36)],
    gate: Annotated[str, Path(max_length=32)],
    session: ReadSession,
) -> HTMLResponse:
    """A gate's own HTML report (Giskard's scan), isolated from this site."""
    row = session.scalar(
        select(GateResultRow).where(GateResultRow.run_id == run_id, GateResultRow.gate == gate)
    )
    if row is None or not row.report_html:
        raise NotFound(f"no report of gate {gate!r} in run {run_id}")
    return HTMLResponse(row.report_html, headers=REPORT_HEADERS)
