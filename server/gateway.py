"""One way in for every front end (gRPC, REST, the worker stream): check the
caller's key, then run the operation — a write through the replicated log,
stamped with fresh ids; a read on the leader's engine, or through the log
when the caller asks for a strong read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from google.protobuf.message import Message as ProtoMessage

from kokaq.protocol import convert as cv
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.auth import Authenticator
from kokaq.server.committer import new_ids
from kokaq.server.log_format import HELD_BACK, LOG_FORMAT, format_needed, in_format
from kokaq.server.operations import OPERATIONS, ids_needed

__all__ = ["Executor", "Gateway"]

log = logging.getLogger("kokaq.server")


class Executor(Protocol):
    """Runs operations: through Raft on a node, on a local engine in tests."""

    async def write(self, name: str, request: bytes, ids: list[str]) -> Any: ...

    async def read(self, name: str, request: Any) -> Any: ...

    def log_format(self) -> int:
        """The log format the cluster agreed on."""
        ...

    async def agree_format(self, needed: int) -> int:
        """Agree on ``needed`` (or newer) if every member applies it; the
        agreed format after."""
        ...


class Gateway:
    def __init__(
        self,
        executor: Executor,
        auth: Authenticator,
        on_leased: Callable[[Any], None] | None = None,
    ) -> None:
        self.executor = executor
        self.auth = auth
        self._on_leased = on_leased  # told every Dequeue's messages (metrics)
        #: Told each write just before it goes to the log (the worker sessions
        #: watch for enqueues).
        self.on_write: Callable[[str, ProtoMessage], None] | None = None
        self._said_format: set[int] = set()  # formats whose writes were held back (warned)

    def authorize(self, name: str, request: ProtoMessage, key: str | None) -> None:
        operation = OPERATIONS[name]
        self.auth.check(key, operation.roles, operation.namespace(request))

    async def run(
        self,
        name: str,
        request: ProtoMessage,
        key: str | None,
        *,
        raw: bytes | None = None,
        strong: bool = False,
    ) -> Any:
        """The core result of operation ``name``; raises its KokaqError.
        ``raw`` is the request as received, replicated as it is."""
        self.authorize(name, request, key)
        return await self.run_authorized(name, request, raw=raw, strong=strong)

    async def ack(self, lock: pb.LockRef, result: bytes, key: str | None) -> None:
        """Ack a lease, keeping ``result`` unless it is empty. ``Ack`` takes a
        LockRef, which has no room for one: an AckBatch of one carries it."""
        if not result:
            await self.run("Ack", lock, key)
            return
        (error,) = await self.run("AckBatch", cv.ack_of_one(lock, result), key)
        if error is not None:
            raise cv.ack_item_error(error)

    async def run_authorized(
        self, name: str, request: ProtoMessage, *, raw: bytes | None = None, strong: bool = False
    ) -> Any:
        operation = OPERATIONS[name]
        if operation.write:
            if operation.prepare is not None:
                request, raw = operation.prepare(request), None
            if self.executor.log_format() < LOG_FORMAT:
                agreed = await self._agreed_format(format_needed(name, request))
                name, downgraded = in_format(name, request, agreed)
                if downgraded is not request:
                    request, raw = downgraded, None
                    operation = OPERATIONS[name]
            ids = new_ids(ids_needed(name, request))
            if self.on_write is not None:
                self.on_write(name, request)
            result = await self.executor.write(name, raw or request.SerializeToString(), ids)
            if name == "Dequeue":
                self.leased(result)
            return result
        if strong:  # the read takes its place in the log
            return await self.executor.write(name, raw or request.SerializeToString(), [])
        return await self.executor.read(name, request)

    async def _agreed_format(self, needed: int) -> int:
        agreed = self.executor.log_format()
        if needed > agreed:
            agreed = await self.executor.agree_format(needed)
            if needed > agreed and needed not in self._said_format:
                self._said_format.add(needed)
                log.warning(
                    "the cluster's log format is %d (a member applies no newer, or is "
                    "pinned with --log-format): %s until every member applies format %d",
                    agreed,
                    HELD_BACK[needed],
                    needed,
                )
        return agreed

    def leased(self, messages: Any) -> None:
        """Messages a Dequeue leased (for the metrics)."""
        if self._on_leased is not None and messages:
            self._on_leased(messages)
