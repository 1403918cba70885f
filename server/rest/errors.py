"""Errors over HTTP: ``{"error": {"code", "type", "message", "field", "details"}}``.

``code`` is the gRPC status name (INVALID_ARGUMENT, NOT_FOUND, …), ``type``
the KokaqError class the SDKs raise, ``field`` the input at fault (for
invalid input), and ``details`` the error's data — the leader hint of a
NotLeader, say. The HTTP status comes from the same table as gRPC's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from kokaq.core import InvalidArgument, KokaqError, NotLeader
from kokaq.protocol.errors import status_for

__all__ = ["ERROR_SCHEMA", "error_response", "install_error_handlers"]

log = logging.getLogger("kokaq.server.rest")

#: The documented shape of every error answer (OpenAPI).
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "type", "message"],
            "properties": {
                "code": {"type": "string", "example": "INVALID_ARGUMENT"},
                "type": {"type": "string", "example": "InvalidArgument"},
                "message": {"type": "string"},
                "field": {"type": "string", "nullable": True},
                "details": {"type": "object"},
            },
        }
    },
}

_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "FAILED_PRECONDITION",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
}


def error_response(error: KokaqError, extra: dict[str, Any] | None = None) -> JSONResponse:
    status = status_for(error)
    details = error.details() | (extra or {})
    body = {
        "code": status.grpc.name,
        "type": type(error).__name__,
        "message": error.message,
        "field": details.get("field"),
        "details": details,
    }
    return JSONResponse({"error": body}, status_code=status.http)


def _field_of(location: Sequence[Any]) -> str:
    """``("body", "items", 3, "priority")`` → ``items[3].priority``."""
    out = ""
    for part in location[1:] if location and location[0] in ("body", "query", "path") else location:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or str(location[0] if location else "body")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KokaqError)
    async def kokaq_error(request: Request, error: KokaqError) -> JSONResponse:
        extra = {}
        if isinstance(error, NotLeader):  # REST clients want the leader's HTTP address
            extra["leader_http"] = request.app.state.node.leader_http()
        return error_response(error, extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": ("body",), "msg": "is invalid"}
        field = _field_of(first.get("loc", ()))
        reason = str(first.get("msg", "is invalid"))
        return error_response(InvalidArgument(field, reason))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "UNKNOWN")
        body = {"code": code, "type": "HTTPError", "message": str(error.detail), "field": None}
        return JSONResponse({"error": body}, status_code=error.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        body = {
            "code": "INTERNAL",
            "type": "KokaqError",
            "message": "internal error",
            "field": None,
        }
        return JSONResponse({"error": body}, status_code=500)
