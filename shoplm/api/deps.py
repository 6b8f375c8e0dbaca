"""Dependencies shared by the routes: the current engine and API-key checks.

Keys come from `Settings.read_key` / `Settings.admin_key`, are read from the `X-API-Key`
header (or `Authorization: Bearer ...`), compared in constant time, and never logged or
echoed. The admin key also works wherever the read key does.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Mapping

from fastapi import Depends, Request

from shoplm.api.problems import Forbidden, Unauthorized
from shoplm.engine.engine import Engine


async def get_engine(request: Request) -> Engine:
    # async: a plain def dependency costs a thread-pool hop per request. Read once per
    # request: a reload swaps app.state.engine, and a request in flight keeps the engine it
    # started with.
    return request.app.state.engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request presents: `X-API-Key`, else `Authorization: Bearer ...`."""
    key = headers.get("x-api-key")
    if key is None:
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            key = auth[7:].strip()
    return key or None


def matches(presented: str, expected) -> bool:
    """Constant-time comparison with a configured SecretStr key (None never matches)."""
    return expected is not None and hmac.compare_digest(presented.encode(), expected.get_secret_value().encode())


def key_role(settings, presented: str | None) -> str | None:
    """'admin', 'read', or None for a missing or invalid key."""
    if presented is None:
        return None
    if matches(presented, settings.admin_key):
        return "admin"
    if matches(presented, settings.read_key):
        return "read"
    return None


async def require_read(request: Request) -> None:
    settings = request.app.state.settings
    if settings.read_key is None:
        return
    presented = presented_key(request.headers)
    if presented is None:
        raise Unauthorized("this route needs an API key: send it in the X-API-Key header")
    if key_role(settings, presented) is None:
        raise Unauthorized("the API key is not valid: check the X-API-Key header")


async def require_admin(request: Request) -> None:
    settings = request.app.state.settings
    if settings.admin_key is None:
        raise Forbidden("admin routes are disabled: start the service with SHOPLM_ADMIN_KEY set")
    presented = presented_key(request.headers)
    if presented is None:
        raise Unauthorized("this route needs the admin API key in the X-API-Key header")
    role = key_role(settings, presented)
    if role == "admin":
        return
    if role == "read":
        raise Forbidden("this route needs the admin key; the read key only allows queries and events")
    raise Unauthorized("the API key is not valid: check the X-API-Key header")


ReadAccess = Depends(require_read)
AdminAccess = Depends(require_admin)
