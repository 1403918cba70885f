"""What every route gets: the caller, i.e. the node's gateway and the API key
the request presented (``X-API-Key``, or ``Authorization: Bearer``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader
from google.protobuf.message import Message as ProtoMessage

from kokaq.server.gateway import Gateway

__all__ = ["Caller", "CallerDep", "api_key_header", "caller_of"]

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="an API key of the node"
)


@dataclass(frozen=True, slots=True)
class Caller:
    gateway: Gateway
    key: str | None

    async def run(self, name: str, request: ProtoMessage) -> Any:
        """The core result of operation ``name``, for this caller's key."""
        return await self.gateway.run(name, request, self.key)


def caller_of(request: Request, key: Annotated[str | None, Security(api_key_header)]) -> Caller:
    if key is None:
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            key = bearer[7:].strip()
    return Caller(request.app.state.gateway, key)


CallerDep = Annotated[Caller, Depends(caller_of)]
