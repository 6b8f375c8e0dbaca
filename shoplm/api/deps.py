"""Dependencies shared by the routes: the current engine and API-key checks.

Keys come from `Settings.read_key` / `Settings.admin_key`, are read from the `X-API-Key`
header (or `Authorization: Bearer ...`), compared in constant time, and never logged or
echoed. The admin key also works wherever the read key does.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from shoplm.api.problems import Forbidden, Unauthorized
from shoplm.engine import Engine


def get_engine(request: Request) -> Engine:
    # Read once per request: a reload swaps app.state.engine, and a request in flight
    # keeps the engine it started with.
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def _presented_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key is None:
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
    return key or None


def _matches(presented: str, expected) -> bool:
    return expected is not None and hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())


def require_read(request: Request) -> None:
    settings = request.app.state.settings
    if settings.read_key is None:
        return
    presented = _presented_key(request)
    if presented is None:
        raise Unauthorized("this route needs an API key: send it in the X-API-Key header")
    if not (_matches(presented, settings.read_key) or _matches(presented, settings.admin_key)):
        raise Unauthorized("the API key is not valid: check the X-API-Key header")


def require_admin(request: Request) -> None:
    settings = request.app.state.settings
    if settings.admin_key is None:
        raise Forbidden("admin routes are disabled: start the service with SHOPLM_ADMIN_KEY set")
    presented = _presented_key(request)
    if presented is None:
        raise Unauthorized("this route needs the admin API key in the X-API-Key header")
    if _matches(presented, settings.admin_key):
        return
    if _matches(presented, settings.read_key):
        raise Forbidden("this route needs the admin key; the read key only allows queries and events")
    raise Unauthorized("the API key is not valid: check the X-API-Key header")


ReadAccess = Depends(require_read)
AdminAccess = Depends(require_admin)
