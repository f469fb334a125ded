"""Shared FastAPI dependencies: settings, the registry, database sessions, who is asking.

Sessions, one rule: a request holds at most one transaction that may write, and only when
the route writes in it. On SQLite a transaction that may write holds the database's one write
lock from its first statement to its end, so code that opens a transaction of its own
(quarantine, the end of a waiver, the guard) must be called with no such session open:
- `ReadSession`: a read (service.store.db.read_transaction): takes no lock a writer waits
  for, refuses writes. Viewer routes and the report pages.
- `WriteSession`: one transaction, committed before the answer is sent (scope "function"),
  so a client that is told "201" can count on the row, and a failed commit is a 503 rather
  than a lost write after a success.
- neither: routes whose domain code owns its transactions (incidents, revoking a waiver).
Who is asking is looked up in a read of its own, closed before the route runs.

Authorization is a dependency (`ViewerPrincipal`, `OperatorPrincipal`, `ApproverPrincipal`):
FastAPI solves dependencies before it validates the body, so a client without the role
hears 401 or 403, not what was wrong with a body it may not send anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.config import Settings
from service.errors import Unauthorized
from service.mlflow.registry import Registry
from service.store import page_sessions
from service.store.auth import Principal, Role, authenticate, resolve_token
from service.store.db import read_transaction, transaction


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]


def get_read_session(settings: SettingsDep) -> Iterator[Session]:
    with read_transaction(settings.resolved_database_url) as session:
        yield session


def get_write_session(settings: SettingsDep) -> Iterator[Session]:
    with transaction(settings.resolved_database_url) as session:
        yield session


ReadSession = Annotated[Session, Depends(get_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(get_write_session, scope="function")]

# OpenAPI's `securitySchemes`; auto_error off so the 401 says what is missing, in our words.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="gk_...",
    description="A token from `gatekeeper token create`, or GATEKEEPER_ADMIN_TOKEN.",
)


def get_principal(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    with read_transaction(settings.resolved_database_url) as session:
        return resolve_token(session, settings, credentials.credentials).principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def _holder_of(role: Role) -> Callable[[Principal], Principal]:
    def check(principal: CurrentPrincipal) -> Principal:
        principal.require(role)
        return principal

    check.__name__ = f"require_{role}"
    return check


ViewerPrincipal = Annotated[Principal, Depends(_holder_of(Role.VIEWER))]
OperatorPrincipal = Annotated[Principal, Depends(_holder_of(Role.OPERATOR))]
ApproverPrincipal = Annotated[Principal, Depends(_holder_of(Role.APPROVER))]


def get_page_viewer(
    request: Request,
    session: ReadSession,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal | None:
    """Who is looking at a report page: a bearer token (scripts) or the sign-in cookie
    (people), at least a viewer; None only when `GATEKEEPER_PAGES_PUBLIC` opens the pages.
    Unauthorized otherwise; the pages router turns that into the sign-in form.

    Never a token from the URL (`?token=`): URLs end up in logs, history and Referer headers.
    """
    if settings.pages_public:
        return None
    if authorization is not None:  # a script said who it is: that, or nothing
        principal = authenticate(session, settings, authorization)
    else:
        cookie = request.cookies.get(page_sessions.cookie_spec(settings).name)
        if not cookie:
            raise Unauthorized("sign in to see the report pages")
        principal = page_sessions.principal_from_cookie(session, settings, cookie)
    principal.require(Role.VIEWER)
    return principal


PageViewer = Annotated[Principal | None, Depends(get_page_viewer)]
