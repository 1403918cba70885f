"""``GET /v1/workers``: the workers whose streams are open on this node (the
leader holds them all: a worker on a follower is sent to the leader)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from kokaq.server.operations import Role
from kokaq.server.rest.deps import CallerDep
from kokaq.server.rest.health import NodeView

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["workers"])


class WeightedQueue(BaseModel):
    queue: str
    weight: int


class WorkerStream(BaseModel):
    worker_id: str  # as the worker names itself (KOKAQ_WORKER_ID; host-pid by default)
    session_id: str
    stream: str  # "Work", or "Lease" (older workers)
    queues: list[WeightedQueue]
    credit: int  # jobs it may hold unsettled (its prefetch window)
    concurrency: int  # jobs it runs at once
    held: int  # jobs leased to it and not yet settled
    leased: int  # jobs leased to it since it connected
    connected_at_ms: int
    ending: bool  # asked to end: it takes no more jobs
    waiting_for_queue: bool  # a queue it names does not exist (yet: the first job creates it)
    paused_queues: list[str]  # those of its queues that are paused (they give it nothing)


class WorkerList(BaseModel):
    workers: list[WorkerStream]


@router.get("/workers", response_model=WorkerList, summary="Workers connected to this node")
async def list_workers(
    request: Request,
    caller: CallerDep,
    namespace: Annotated[str, Query(min_length=1, max_length=128)] = "default",
) -> Any:
    """The worker streams open on this node for the namespace, oldest first."""
    caller.gateway.auth.check(caller.key, (Role.ANY,), namespace)
    node: NodeView = request.app.state.node
    return {"workers": node.workers(namespace)}
