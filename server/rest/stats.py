"""Stats of every queue a caller may read, for the job counts and the dashboard."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query

from kokaq.core import PermissionDenied, QueueStats
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.rest.deps import Caller, CallerDep

__all__ = ["all_queue_stats", "router", "stats_json"]

router = APIRouter(prefix="/v1", tags=["operations"])


async def all_queue_stats(
    caller: Caller, namespace: str | None
) -> list[tuple[str, str, QueueStats]]:
    """``(namespace, queue, stats)`` for the namespace given, or for every
    namespace the caller's key may read."""
    if namespace is None:
        infos = await caller.run("ListNamespaces", pb.ListNamespacesRequest())
        namespaces = [info.name for info in infos]
    else:
        namespaces = [namespace]
    found = []
    for ns in namespaces:
        try:
            queues = await caller.run("ListQueues", pb.ListQueuesRequest(namespace=ns))
        except PermissionDenied:
            if namespace is not None:
                raise
            continue  # a key limited to another namespace
        for info in queues:
            request = pb.QueueRequest(namespace=ns, queue=info.name)
            found.append((ns, info.name, await caller.run("GetStats", request)))
    return found


def stats_json(stats: QueueStats) -> dict[str, Any]:
    return {
        "ready": stats.ready,
        "delayed": stats.delayed,
        "leased": stats.leased,
        "succeeded": stats.succeeded,
        "dead": stats.dead,
        "oldest_ready_age_ms": stats.oldest_ready_age_ms,
        "totals": dict(stats.totals),
        "paused": stats.paused,
    }


@router.get("/overview", summary="Every queue with its counts by state, totals and oldest age")
async def overview(
    caller: CallerDep,
    namespace: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
) -> Any:
    """One call for a dashboard: rates come from the totals of two calls."""
    queues = [
        {"namespace": ns, "queue": queue, **stats_json(stats)}
        for ns, queue, stats in await all_queue_stats(caller, namespace)
    ]
    return {"at": int(time.time() * 1000), "queues": queues}
