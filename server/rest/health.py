"""``/healthz``: the process answers. ``/readyz``: the node has a leader and
has applied everything it knows to be committed (503 otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from google.protobuf.json_format import MessageToDict

from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.operations import Role
from kokaq.server.rest.deps import CallerDep

__all__ = ["NodeView", "Readiness", "router"]


class Readiness(NamedTuple):
    ready: bool
    reason: str  # why not, or "ok"
    leader: str | None
    commit_index: int
    applied_index: int


@dataclass(frozen=True)
class NodeView:
    """What the HTTP face reads of its node besides the engine."""

    readiness: Callable[[], Readiness]
    cluster: Callable[[], pb.ClusterStatus]
    leader_http: Callable[[], str | None]  # where REST writes go, once announced
    workers: Callable[[str], list[dict[str, Any]]]  # worker streams open here, by namespace


router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="A leader is known and this node has caught up")
async def readyz(request: Request) -> Any:
    node: NodeView = request.app.state.node
    state = node.readiness()
    body = {"status": "ok" if state.ready else "unavailable"} | state._asdict()
    return JSONResponse(body, status_code=200 if state.ready else 503)


@router.get("/v1/cluster", summary="This node's view of the Raft group")
async def cluster(request: Request, caller: CallerDep) -> Any:
    """Role, leader (its Raft and gRPC addresses), term, members with their
    match index and lag (known on the leader), commit and applied index."""
    caller.gateway.auth.check(caller.key, (Role.ANY,), "")
    node: NodeView = request.app.state.node
    status = node.cluster()
    body = MessageToDict(
        status, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    body["commit_index"], body["applied_index"] = status.commit_index, status.applied_index
    body["term"] = status.term
    body["leader_http"] = node.leader_http()
    for member, raw in zip(body["members"], status.members, strict=True):
        if raw.HasField("match_index"):
            member["match_index"] = raw.match_index
            member["lag"] = max(0, status.commit_index - raw.match_index)
    return body
