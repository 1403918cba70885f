"""A member's view of its Raft group: ``Cluster.Status`` (gRPC, and
``GET /v1/cluster`` over REST) and readiness (``/readyz``, gRPC health)."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from pysyncobj import FAIL_REASON

from kokaq.core import FailedPrecondition, InvalidArgument, KokaqError, NotLeader, Unavailable
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.auth import Authenticator
from kokaq.server.committer import Committer
from kokaq.server.operations import Role, state_digest
from kokaq.server.replication import ReplicatedEngine
from kokaq.server.rest.health import Readiness
from kokaq.server.service import abort_with

__all__ = [
    "READY_LAG",
    "change_membership",
    "cluster_handler",
    "cluster_status",
    "readiness",
    "split_address",
]

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


def split_address(address: str, field_name: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidArgument(field_name, f"must be HOST:PORT, got {address!r}")
    return host, int(port)


_FAILURES = {
    FAIL_REASON.REQUEST_DENIED: "refused: another membership change is still in progress, "
    "this term's first entry is not applied yet, or (a transfer) the member is not caught up",
    FAIL_REASON.QUEUE_FULL: "the Raft queue is full",
    FAIL_REASON.DISCARDED: "the change was discarded by a new leader",
}
_CHANGE_TIMEOUT = 10.0  # seconds


async def change_membership(
    raft: ReplicatedEngine, committer: Committer, action: str, address: str
) -> pb.ClusterStatus:
    """Add or remove a member, or hand leadership over; the status once done.

    A transfer holds new writes back until the target has caught up (PySyncObj
    hands over only to a member with the whole log); the writes held then
    fail with NotLeader, and clients send them to the new leader."""
    if action != "transfer" or address:
        split_address(address, "address")
    if not raft.is_leader():
        raise NotLeader(raft.leader_hint())
    member = _is_member(raft, address) or address == raft.leader_address()
    if action == "add" and member:
        raise FailedPrecondition(f"{address} is a member already")
    if action == "remove" and not member:
        raise FailedPrecondition(f"{address} is not a member")
    if action == "remove" and address == raft.leader_address():
        raise FailedPrecondition("the leader cannot remove itself: transfer leadership first")
    if action == "transfer" and not _is_member(raft, address):
        raise FailedPrecondition(f"no member {address or 'but this one'} to hand leadership to")
    if action != "transfer":
        error = await _membership_change(raft, action, address)
    else:
        committer.pause()
        try:
            error = await _transfer(raft, address)
        finally:
            committer.resume()
    if error in (FAIL_REASON.NOT_LEADER, FAIL_REASON.MISSING_LEADER, FAIL_REASON.LEADER_CHANGED):
        raise NotLeader(raft.leader_hint())
    if error != FAIL_REASON.SUCCESS:
        raise FailedPrecondition(_FAILURES.get(error, f"refused (PySyncObj reason {error})"))
    return cluster_status(raft)


_PARTNER = "partner_node_status_server_"  # getStatus() key: 2 when connected


def _partners(status: dict[str, Any]) -> dict[str, Any]:
    """The other members' Raft addresses, each with its connection status."""
    return {k.removeprefix(_PARTNER): v for k, v in status.items() if k.startswith(_PARTNER)}


def _is_member(raft: ReplicatedEngine, address: str) -> bool:
    """Whether ``address`` is another member ("": whether there is any other)."""
    others = _partners(raft.getStatus())
    return address in others if address else bool(others)


async def _membership_change(raft: ReplicatedEngine, action: str, address: str) -> int:
    """Ask again while the leader refuses for a passing reason: its term's
    first entry not applied yet (a new leader), or the previous change still
    on its way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _CHANGE_TIMEOUT / 2
    while (error := await _change_once(raft, action, address)) == FAIL_REASON.REQUEST_DENIED:
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.05)
    return error


async def _transfer(raft: ReplicatedEngine, address: str) -> int:
    """Ask until another member leads: PySyncObj's transfer is best effort (the
    target must have the whole log, and its election can still be lost)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _CHANGE_TIMEOUT
    while loop.time() < deadline:
        error = await _change_once(raft, "transfer", address)
        if error == FAIL_REASON.REQUEST_DENIED and _is_member(raft, address):
            await asyncio.sleep(0.01)  # the target is catching up
            continue
        if error != FAIL_REASON.SUCCESS:
            return error
        election_over = loop.time() + 2.0  # beyond the longest election timeout
        while loop.time() < election_over:
            if not raft.is_leader() and raft.leader_address() is not None:
                return int(FAIL_REASON.SUCCESS)
            await asyncio.sleep(0.02)
    raise Unavailable("leadership did not move in time; check cluster status")


async def _change_once(raft: ReplicatedEngine, action: str, address: str) -> int:
    """One attempt; PySyncObj's FAIL_REASON."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[int] = loop.create_future()

    def settle(error: int) -> None:
        if not outcome.done():
            outcome.set_result(error)

    def done(_: Any, error: int) -> None:  # the Raft thread
        loop.call_soon_threadsafe(settle, error)

    raft.change_membership(action, address, done)
    try:
        return await asyncio.wait_for(outcome, _CHANGE_TIMEOUT)
    except TimeoutError:
        raise Unavailable("the change had no answer in time; check cluster status") from None


def cluster_handler(
    raft: ReplicatedEngine, auth: Authenticator, committer: Committer
) -> grpc.GenericRpcHandler[Any, Any]:
    async def status(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ClusterStatus:
        try:
            auth.check(auth.key_of(context.invocation_metadata() or ()), (Role.ANY,), "")
        except KokaqError as error:
            await abort_with(context, error)
        return cluster_status(raft, with_digest=pb.StatusRequest.FromString(raw).with_digest)

    def change(action: str, request_type: Any) -> Any:
        async def handle(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                auth.check(auth.key_of(context.invocation_metadata() or ()), (Role.ADMIN,), "")
                try:
                    request = request_type.FromString(raw)
                except DecodeError:
                    raise InvalidArgument("request", "is not a valid protobuf message") from None
                address = request.address if action != "transfer" else request.to
                return await change_membership(raft, committer, action, address)
            except KokaqError as error:
                await abort_with(context, error)

        return grpc.unary_unary_rpc_method_handler(
            handle,
            request_deserializer=None,
            response_serializer=pb.ClusterStatus.SerializeToString,
        )

    return grpc.method_handlers_generic_handler(
        "kokaq.v1.Cluster",
        {
            "Status": grpc.unary_unary_rpc_method_handler(
                status,
                request_deserializer=None,
                response_serializer=pb.ClusterStatus.SerializeToString,
            ),
            "AddMember": change("add", pb.MemberRequest),
            "RemoveMember": change("remove", pb.MemberRequest),
            "TransferLeadership": change("transfer", pb.TransferRequest),
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
            address=address,
            connected=connected == 2,
            match_index=s.get("match_idx_server_" + address),
            log_format=raft.members.formats.get(address),
        )
        for address, connected in _partners(s).items()
    ]
    leader = s.get("leader")
    return pb.ClusterStatus(
        node=str(s["self"].id),
        role=_ROLE_NAMES.get(s["state"], str(s["state"])),
        leader=None if leader is None else str(leader.id),
        leader_grpc=None if leader is None else raft.members.grpc.get(str(leader.id)),
        term=s["raft_term"],
        members=members,
        commit_index=s["commit_idx"],
        applied_index=s["last_applied"],
        has_quorum=bool(s["has_quorum"]),
        state_digest=digest,
        log_format=raft.members.log_format,
        node_log_format=raft.members.formats.get(raft.self_address),
    )
