"""An in-process transport: a real ``Engine`` in memory behind the same calls,
so code that uses the SDK can be tested without a server.

    client = Client(transport=InProcessTransport())

Requests and answers still go through their protobuf bytes and the node's
operation table, so what works here works against a node.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from kokaq.client.transport import CLUSTER_CHANGES, CLUSTER_STATUS
from kokaq.core import Engine, FailedPrecondition
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.committer import new_ids
from kokaq.server.operations import OPERATIONS, ids_needed, state_digest

__all__ = ["AsyncInProcessTransport", "InProcessTransport"]


class InProcessTransport:
    def __init__(self, engine: Engine | None = None) -> None:
        self.engine = engine or Engine()
        self._lock = threading.Lock()

    def call(self, name: str, request: Any) -> Any:
        if name == CLUSTER_STATUS:  # one member, always the leader
            digest = None
            if request.with_digest:
                with self._lock:
                    digest = state_digest(self.engine)
            return pb.ClusterStatus(node="in-process", role="leader", leader="in-process", term=1,
                                    has_quorum=True, state_digest=digest)  # fmt: skip
        if name in CLUSTER_CHANGES:
            raise FailedPrecondition(
                "an in-process engine is a single member: no cluster to change"
            )
        operation = OPERATIONS[name]
        parsed = operation.request.FromString(request.SerializeToString())
        ids = new_ids(ids_needed(name, parsed))
        with self._lock:
            result = operation.run(self.engine, parsed, time.time_ns() // 1_000_000, ids)
        return operation.response.FromString(operation.respond(result).SerializeToString())

    def close(self) -> None:
        pass


class AsyncInProcessTransport:
    def __init__(self, engine: Engine | None = None) -> None:
        self._sync = InProcessTransport(engine)
        self.engine = self._sync.engine

    async def call(self, name: str, request: Any) -> Any:
        return self._sync.call(name, request)

    async def close(self) -> None:
        pass
