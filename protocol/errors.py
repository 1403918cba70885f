"""One table from each ``KokaqError`` class to a gRPC status code and an HTTP
status, and the ``kokaq-error-bin`` trailer that carries an error's data.

A server aborts a call with ``status_for(error)`` and ``error_trailer(error)``;
the client rebuilds the very same subclass with ``error_from_status``.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import grpc

from kokaq.core import errors as e
from kokaq.protocol.v1 import kokaq_pb2 as pb

__all__ = ["ERROR_TRAILER", "STATUS_TABLE", "Status", "error_detail", "error_from_detail"]

ERROR_TRAILER = "kokaq-error-bin"


class Status(NamedTuple):
    grpc: grpc.StatusCode
    http: int


#: Most specific class first: the first entry the error is an instance of wins.
STATUS_TABLE: tuple[tuple[type[e.KokaqError], Status], ...] = (
    (e.PayloadTooLarge, Status(grpc.StatusCode.INVALID_ARGUMENT, 413)),
    (e.InvalidArgument, Status(grpc.StatusCode.INVALID_ARGUMENT, 400)),
    (e.NotFound, Status(grpc.StatusCode.NOT_FOUND, 404)),
    (e.AlreadyExists, Status(grpc.StatusCode.ALREADY_EXISTS, 409)),
    (e.FailedPrecondition, Status(grpc.StatusCode.FAILED_PRECONDITION, 409)),
    (e.ResourceExhausted, Status(grpc.StatusCode.RESOURCE_EXHAUSTED, 429)),
    (e.Unavailable, Status(grpc.StatusCode.UNAVAILABLE, 503)),
    (e.Unauthenticated, Status(grpc.StatusCode.UNAUTHENTICATED, 401)),
    (e.PermissionDenied, Status(grpc.StatusCode.PERMISSION_DENIED, 403)),
    (e.KokaqError, Status(grpc.StatusCode.INTERNAL, 500)),
)

_BY_CODE = {status.grpc: cls for cls, status in reversed(STATUS_TABLE)}
_CLASSES = e.error_classes()


def status_for(error: e.KokaqError) -> Status:
    for cls, status in STATUS_TABLE:
        if isinstance(error, cls):
            return status
    raise AssertionError("KokaqError is the last row")  # pragma: no cover


def error_detail(error: e.KokaqError) -> pb.ErrorDetail:
    return pb.ErrorDetail(
        type=type(error).__name__,
        message=error.message,
        details_json=json.dumps(error.details(), separators=(",", ":")),
    )


def error_from_detail(detail: pb.ErrorDetail) -> e.KokaqError:
    """The error a detail describes; an unknown or malformed one becomes the
    base class of its kind rather than failing."""
    cls = _CLASSES.get(detail.type)
    if cls is not None:
        try:
            if not cls.fields:  # no data but its message (FailedPrecondition, say)
                return cls(detail.message)
            return cls(**json.loads(detail.details_json or "{}"))
        except (TypeError, ValueError):
            pass
    return e.KokaqError(detail.message or detail.type)


def error_from_status(code: grpc.StatusCode, text: str, trailer: bytes | None) -> e.KokaqError:
    """The KokaqError for a failed call: from its trailer when the server sent
    one, else the table's class for the status code (transport failures)."""
    if trailer:
        try:
            return error_from_detail(pb.ErrorDetail.FromString(trailer))
        except Exception:  # a garbled trailer still leaves the status code
            pass
    cls = _BY_CODE.get(code)
    if cls in (e.Unavailable, e.Unauthenticated, e.PermissionDenied, e.ResourceExhausted):
        return cls(text)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return e.Unavailable(f"deadline exceeded: {text}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return e.InvalidArgument("", text)
    return e.KokaqError(f"{code.name}: {text}")
