"""HTTP errors and the handlers that turn every failure into JSON:
`{"error": {"status": 404, "message": "...", "details": [{"loc": [...], "msg": "..."}]}}`."""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shoplm.errors import InvalidRecords, NotFound, ShopLMError, StoreError

log = logging.getLogger("shoplm.api")


class HTTPProblem(ShopLMError):
    status = 500


class Unauthorized(HTTPProblem):
    status = 401


class Forbidden(HTTPProblem):
    status = 403


class Unprocessable(HTTPProblem):
    status = 422


class ProblemResponse(JSONResponse):
    """An error body with every non-ASCII character escaped (`\\uXXXX`, still the same JSON
    text to a client). Messages quote the client's input, and a JSON body may carry a lone
    surrogate (`"\\ud800"`, or its raw bytes, which Python's JSON decoder passes through):
    `JSONResponse` encodes to UTF-8, which has no such character, and answered 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def error_response(status: int, message: str, details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"status": status, "message": message, "details": details or []}}
    return ProblemResponse(body, status_code=status, headers=headers)


def _validation_details(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())], "msg": e.get("msg", "")}
            for e in errors]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(list(exc.errors()))
        first = details[0] if details else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return error_response(422, f"{where}: {first['msg']}" if where else first["msg"], details)

    @app.exception_handler(InvalidRecords)
    async def _invalid_records(request: Request, exc: InvalidRecords) -> JSONResponse:
        details = [{"loc": ["body", exc.kind, index, p.field], "msg": str(p)}
                   for index, problems in exc.problems.items() for p in problems]
        return error_response(422, str(exc), details)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(404, str(exc))

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> JSONResponse:
        headers = {"WWW-Authenticate": "ApiKey"} if exc.status == 401 else None
        return error_response(exc.status, str(exc), headers=headers)

    @app.exception_handler(StoreError)
    @app.exception_handler(sqlalchemy.exc.OperationalError)
    @app.exception_handler(sqlalchemy.exc.InterfaceError)
    async def _store(request: Request, exc: Exception) -> JSONResponse:
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return error_response(503, "the store is not reachable right now; retry shortly", headers={"Retry-After": "1"})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; the server log has the details")
