"""The gRPC services, generated from the operation table.

Each RPC: authenticate, parse, then a write goes to the replicated log
(stamped with fresh ids) and a read runs on the leader's engine. A
KokaqError aborts the call with its status code and the ``kokaq-error-bin``
trailer, so the client raises the same subclass.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from kokaq.core import InvalidArgument, KokaqError
from kokaq.protocol.errors import ERROR_TRAILER, error_detail, status_for
from kokaq.server.gateway import Gateway
from kokaq.server.operations import OPERATIONS, Operation

__all__ = ["abort_with", "generic_handlers"]

PACKAGE = "kokaq.v1"


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: KokaqError) -> None:
    status = status_for(error)
    await context.abort(
        status.grpc,
        error.message,
        trailing_metadata=((ERROR_TRAILER, error_detail(error).SerializeToString()),),
    )


#: Request metadata choosing how a read is served: "leader" (default: from the
#: leader's engine) or "strong" (through the Raft log, ordered after every write
#: committed before it, at the cost of a log entry).
CONSISTENCY_HEADER = "x-kokaq-consistency"


def _strong(metadata: Any) -> bool:
    for key, value in metadata:
        if key == CONSISTENCY_HEADER:
            if value not in ("leader", "strong"):
                raise InvalidArgument("consistency", "must be 'leader' or 'strong'")
            return bool(value == "strong")
    return False


Observe = Callable[[str, str, float], None]  # (method, status code name, seconds)


def _handler(
    name: str, operation: Operation, gateway: Gateway, observe: Observe | None
) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        started, code = time.perf_counter(), "OK"
        try:
            try:
                request = operation.request.FromString(raw)
            except DecodeError:
                raise InvalidArgument("request", "is not a valid protobuf message") from None
            metadata = context.invocation_metadata() or ()
            key = gateway.auth.key_of(metadata)
            result = await gateway.run(name, request, key, raw=raw, strong=_strong(metadata))
            return operation.respond(result)
        except KokaqError as error:
            code = status_for(error).grpc.name
            await abort_with(context, error)
        finally:
            if observe is not None:
                observe(name, code, time.perf_counter() - started)

    return handle


def generic_handlers(
    gateway: Gateway, observe: Observe | None = None
) -> list[grpc.GenericRpcHandler[Any, Any]]:
    """One generic handler per service of the operation table."""
    services: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for name, operation in OPERATIONS.items():
        if operation.service == "Internal":
            continue  # proposed by the node itself
        services.setdefault(operation.service, {})[name] = grpc.unary_unary_rpc_method_handler(
            _handler(name, operation, gateway, observe),
            request_deserializer=None,  # raw bytes: a write is replicated as received
            response_serializer=operation.response.SerializeToString,
        )
    return [
        grpc.method_handlers_generic_handler(f"{PACKAGE}.{service}", methods)
        for service, methods in services.items()
    ]
