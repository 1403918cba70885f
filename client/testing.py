"""An in-process transport: a real ``Engine`` in memory behind the same calls,
so code that uses the SDK can be tested without a server.

    transport = InProcessTransport()
    client = Client(transport=transport)
    # and a Worker on the same engine, to test job handlers:
    worker = Worker(transport=AsyncInProcessTransport(sync=transport))

Requests and answers still go through their protobuf bytes and the node's
operation table, so what works here works against a node.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from kokaq.client.transport import (
    CLUSTER_CHANGES,
    CLUSTER_STATUS,
    END_LEASE,
    SETTLE,
    SETTLE_MANY,
)
from kokaq.core import Engine, FailedPrecondition, InvalidArgument, KokaqError, NotFound
from kokaq.protocol import convert as cv
from kokaq.protocol.errors import error_detail, error_from_detail
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.committer import new_ids
from kokaq.server.log_format import LOG_FORMAT
from kokaq.server.operations import OPERATIONS, ids_needed, state_digest

__all__ = ["AsyncInProcessTransport", "InProcessTransport"]


class InProcessTransport:
    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or Engine()
        self._lock = threading.Lock()

    def call(self, name: str, request: Any) -> Any:
        if name == SETTLE:
            return pb.SettleResponse(outcome=self._settle(request))
        if name == SETTLE_MANY:
            return pb.SettleManyResponse(results=[self._settle_one(i) for i in request.items])
        return self._call(name, request)

    def _settle(self, item: pb.SettleRequest) -> str:
        """A worker's settle, as the node's Workers service runs it."""
        outcome = item.WhichOneof("outcome")
        if item.result and outcome != "ack":
            raise InvalidArgument("result", "goes with an ack only")
        if outcome == "ack":
            if not item.result:
                self._call("Ack", item.ack)
                return "acked"
            (detail,) = self._call("AckBatch", cv.ack_of_one(item.ack, item.result)).results
            if detail.type:
                raise cv.ack_item_error(error_from_detail(detail))
            return "acked"
        if outcome == "nack":
            return str(self._call("Nack", item.nack).outcome)
        if outcome == "release":
            self._call("Release", item.release)
            return "released"
        raise FailedPrecondition("a settle names ack, nack or release")

    def _settle_one(self, item: pb.SettleRequest) -> pb.SettleOutcome:
        try:
            return pb.SettleOutcome(outcome=self._settle(item))
        except KokaqError as error:
            return pb.SettleOutcome(error=error_detail(error))

    def _call(self, name: str, request: Any) -> Any:
        if name == CLUSTER_STATUS:  # one member, always the leader
            digest = None
            if request.with_digest:
                with self._lock:
                    digest = state_digest(self.engine)
            return pb.ClusterStatus(node="in-process", role="leader", leader="in-process", term=1,
                                    has_quorum=True, state_digest=digest, log_format=LOG_FORMAT,
                                    node_log_format=LOG_FORMAT)  # fmt: skip
        if name in CLUSTER_CHANGES:
            raise FailedPrecondition(
                "an in-process engine is a single member: no cluster to change"
            )
        operation = OPERATIONS[name]
        parsed = operation.request.FromString(request.SerializeToString())
        if operation.prepare is not None:
            parsed = operation.prepare(parsed)
        ids = new_ids(ids_needed(name, parsed))
        with self._lock:
            result = operation.run(self.engine, parsed, time.time_ns() // 1_000_000, ids)
        return operation.response.FromString(operation.respond(result).SerializeToString())

    def close(self) -> None:
        pass


class AsyncInProcessTransport:
    """The same, for ``AsyncClient`` and ``Worker``; ``sync`` shares the engine
    (and its lock) with a blocking ``InProcessTransport``."""

    #: How often the in-process lease stream looks for ready jobs (a node
    #: pushes them as they come; a test does not need that).
    POLL_SECONDS = 0.01

    def __init__(
        self, engine: Engine | None = None, *, sync: InProcessTransport | None = None
    ) -> None:
        self._sync = sync or InProcessTransport(engine)
        self.engine = self._sync.engine
        self._sessions = 0
        self._open: set[str] = set()  # sessions whose stream is open
        self._ending: set[str] = set()  # and were asked to end (EndLease)

    async def call(self, name: str, request: Any) -> Any:
        if name == END_LEASE:
            if not request.session_id:
                raise InvalidArgument("session_id", "is required")
            if request.session_id not in self._open:
                raise NotFound(f"lease session {request.session_id!r} not found")
            self._ending.add(request.session_id)
            return pb.EndLeaseResponse()
        return self._sync.call(name, request)

    def lease_stream(self, request: pb.LeaseRequest) -> AsyncIterator[pb.LeaseEvent]:
        """The Workers.Lease stream: the session first, then jobs within the
        credit (which comes back as the jobs leave their lease)."""
        return self._lease(request)

    async def _lease(self, request: pb.LeaseRequest) -> AsyncIterator[pb.LeaseEvent]:
        self._sessions += 1
        session = f"in-process-{self._sessions}"
        self._open.add(session)
        try:
            yield pb.LeaseEvent(session_id=session)
            dequeue = pb.DequeueRequest(namespace=request.namespace, queues=request.queues)
            if request.HasField("visibility_timeout_ms"):
                dequeue.visibility_timeout_ms = request.visibility_timeout_ms
            held: list[pb.Message] = []
            waiting = False
            while session not in self._ending:
                held = [m for m in held if self._still_leased(m)]
                free = int(request.credit) - len(held)
                if free > 0:
                    dequeue.max_count = free
                    try:
                        jobs = list(self._sync.call("Dequeue", dequeue).messages)
                        waiting = False
                    except NotFound as error:  # as on a node: it waits for its queue to be made
                        jobs = []
                        if not waiting:
                            waiting = True
                            yield pb.LeaseEvent(waiting=error.message)
                    if jobs:
                        held += jobs
                        yield pb.LeaseEvent(jobs=jobs)
                        continue
                await asyncio.sleep(self.POLL_SECONDS)
        finally:
            self._open.discard(session)
            self._ending.discard(session)

    def _still_leased(self, message: pb.Message) -> bool:
        ref = pb.MessageRef(namespace=message.namespace, queue=message.queue, message_id=message.id)
        try:
            now = self._sync.call("GetMessage", ref)
        except KokaqError:
            return False
        return bool(now.lock_id == message.lock_id)

    def failed(self, error: KokaqError) -> None:
        """Nowhere else to go."""

    async def close(self) -> None:
        pass
