"""Shared FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from service.config import Settings
from service.errors import Unauthorized
from service.mlflow.registry import Registry
from service.store import page_sessions
from service.store.auth import Principal, Role, authenticate
from service.store.db import session_factory


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    with session_factory(settings.resolved_database_url)() as session, session.begin():
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_principal(
    session: SessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    return authenticate(session, settings, authorization)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_page_viewer(
    request: Request,
    session: SessionDep,
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
