"""Sign-in and sign-out for the report pages (the cookie: `service/store/page_sessions.py`).

The token travels in the POST body only, never in a URL; it is never echoed back, logged or
stored (the cookie names the token's row, not the token). A wrong token gets the form again,
401, with a plain error. The token space (32 random bytes) makes guessing hopeless, so there
is no lockout that an attacker could use to lock a person out.
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from service.api.deps import SettingsDep, WriteSession
from service.api.pages import local_path, sign_in_page
from service.errors import Unauthorized
from service.store import audit, page_sessions

log = logging.getLogger("gatekeeper.pages")

router = APIRouter(tags=["pages"], include_in_schema=False)

# a form of two short fields; anything larger is not our form
_MAX_FORM_BYTES = 4096


async def _form_fields(request: Request) -> dict[str, str] | None:
    """The urlencoded form's fields (first value of each), or None when the body is not our
    form (too large, not urlencoded text, too many fields)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return None
    try:
        parsed = parse_qs(body.decode("ascii"), keep_blank_values=True, max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return None
    return {key: values[0] for key, values in parsed.items()}


FormFields = Annotated[dict[str, str] | None, Depends(_form_fields)]


def _cross_site(request: Request) -> bool:
    """A form posted from another site (login CSRF: signing a person in as someone else).
    Browsers say so in Sec-Fetch-Site; scripts send none and are not a browser to fool."""
    return request.headers.get("sec-fetch-site", "") == "cross-site"


@router.get("/signin", response_class=HTMLResponse)
def sign_in_form(
    next_path: Annotated[str, Query(alias="next", max_length=512)] = "/",
) -> HTMLResponse:
    return sign_in_page(next_path)


@router.post("/signin", response_class=HTMLResponse)
def sign_in(
    request: Request, fields: FormFields, session: WriteSession, settings: SettingsDep
) -> Response:
    fields = fields or {}
    target = local_path(fields.get("next"))
    if _cross_site(request):
        return sign_in_page(target, error="Sign in from this site's own form.", status_code=403)
    token = fields.get("token", "").strip()
    if not token:
        return sign_in_page(target, error="Paste your API token.", status_code=401)
    try:
        principal, value = page_sessions.sign_in(session, settings, token)
    except Unauthorized:
        client = request.client.host if request.client else "unknown"
        log.warning("page sign-in refused: unknown or revoked token (client %s)", client)
        return sign_in_page(target, error="That token was not accepted.", status_code=401)
    audit.record(session, actor=principal.name, action="pages.signed_in", target="pages")
    spec = page_sessions.cookie_spec(settings)
    # 303: the browser follows with a GET of the page it asked for in the first place
    response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        spec.name,
        value,
        max_age=spec.max_age,
        path=spec.path,
        secure=spec.secure,
        httponly=spec.httponly,
        samesite=spec.samesite,
    )
    return response


@router.post("/signout")
def sign_out(request: Request, settings: SettingsDep) -> Response:
    """Clears the cookie in this browser. The cookie is stateless: to end a session
    everywhere, revoke the token (or delete the data dir's page session key)."""
    if _cross_site(request):
        return sign_in_page("/", error="Sign out from this site's own pages.", status_code=403)
    spec = page_sessions.cookie_spec(settings)
    response = RedirectResponse("/signin", status_code=303, headers={"Cache-Control": "no-store"})
    response.delete_cookie(
        spec.name,
        path=spec.path,
        secure=spec.secure,
        httponly=spec.httponly,
        samesite=spec.samesite,
    )
    return response
