"""`GET /v1/shoplm.js`: the tracking snippet a storefront includes (static/shoplm.js).

Public: a `<script src>` sends no key, and the file holds nothing secret. Cacheable: browsers
keep it `MAX_AGE_S`, then revalidate with its ETag (a 304 without a body while unchanged).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

SNIPPET = Path(__file__).parent / "static" / "shoplm.js"
MAX_AGE_S = 3600  # an hour: after an upgrade, every visitor runs the new snippet within the hour

router = APIRouter(prefix="/v1")


@cache
def _snippet() -> tuple[bytes, str]:
    """The file and its ETag, read on first use (the file changes only with the package)."""
    body = SNIPPET.read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


@router.get("/shoplm.js", tags=["events"], summary="Tracking snippet", response_class=Response,
            responses={200: {"content": {"application/javascript": {}}}, 304: {"description": "Not modified"}})
def snippet(request: Request) -> Response:
    """The tracking snippet (docs/service.md, "Tracking snippet")."""
    body, etag = _snippet()
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={MAX_AGE_S}"}
    presented = {tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")}
    if etag in presented or "*" in presented:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/javascript", headers=headers)
