"""A member's view of its Raft group: ``Cluster.Status`` (gRPC, and
``GET /v1/cluster`` over REST) and readiness (``/readyz``, gRPC health)."""

from __future__ import annotations

from typing import Any

import grpc

from kokaq.core import KokaqError
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.auth import Authenticator
from kokaq.server.operations import Role, state_digest
from kokaq.server.replication import ReplicatedEngine
from kokaq.server.rest.health import Readiness
from kokaq.server.service import abort_with

__all__ = ["READY_LAG", "cluster_handler", "cluster_status", "readiness"]

_ROLE_NAMES = {0: "follower", 1: "candidate", 2: "leader"}

#: Entries a node may trail its known commit index and still be ready: a
#: loaded node is always applying the last few, and must not flap.
READY_LAG = 100


def readiness(raft: ReplicatedEngine) -> Readiness:
    """Ready: a leader is known and what is known committed is applied (but
    for the last few entries, which are always on their way)."""
    s = raft.getStatus()
    leader = s.get("leader")
    commit, applied = int(s["commit_idx"]), int(s["last_applied"])
    if leader is None:
        reason = "no leader is known"
    elif applied + READY_LAG < commit:
        reason = f"applying the log: {applied} of {commit}"
    else:
        reason = "ok"
    return Readiness(
        reason == "ok", reason, None if leader is None else str(leader.id), commit, applied
    )


def cluster_handler(
    raft: ReplicatedEngine, auth: Authenticator
) -> grpc.GenericRpcHandler[Any, Any]:
    async def status(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ClusterStatus:
        try:
            auth.check(auth.key_of(context.invocation_metadata() or ()), (Role.ANY,), "")
        except KokaqError as error:
            await abort_with(context, error)
        return cluster_status(raft, with_digest=pb.StatusRequest.FromString(raw).with_digest)

    return grpc.method_handlers_generic_handler(
        "kokaq.v1.Cluster",
        {
            "Status": grpc.unary_unary_rpc_method_handler(
                status,
                request_deserializer=None,
                response_serializer=pb.ClusterStatus.SerializeToString,
            )
        },
    )


def cluster_status(raft: ReplicatedEngine, *, with_digest: bool = False) -> pb.ClusterStatus:
    """This member's view of the group: role, leader, term, members, indexes."""
    digest = None
    if with_digest:
        with raft.lock:
            digest = state_digest(raft.engine)
    s = raft.getStatus()
    members = [
        pb.Member(
            address=key.removeprefix("partner_node_status_server_"),
            connected=value == 2,
            match_index=s.get(
                "match_idx_server_" + key.removeprefix("partner_node_status_server_")
            ),
        )
        for key, value in s.items()
        if key.startswith("partner_node_status_server_")
    ]
    leader = s.get("leader")
    return pb.ClusterStatus(
        node=str(s["self"].id),
        role=_ROLE_NAMES.get(s["state"], str(s["state"])),
        leader=None if leader is None else str(leader.id),
        leader_grpc=None if leader is None else raft.grpc_addresses.get(str(leader.id)),
        term=s["raft_term"],
        members=members,
        commit_index=s["commit_idx"],
        applied_index=s["last_applied"],
        has_quorum=bool(s["has_quorum"]),
        state_digest=digest,
    )
