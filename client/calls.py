"""Every client call as data: the RPC name, the request, how to read the answer.

``Client`` and ``AsyncClient`` differ only in how they send a ``Call``; what
each call sends and returns is written once, here.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from google.protobuf.message import Message as ProtoMessage

from kokaq.core import (
    DeadPage,
    EnqueueResult,
    FailureReason,
    Headers,
    InvalidArgument,
    KokaqError,
    MessageFilter,
    MessageSpec,
    MessageState,
    MessageView,
    NackOutcome,
    NackResult,
    NamespaceConfig,
    NamespaceInfo,
    QueueConfig,
    QueueInfo,
    QueueStats,
    ScheduleInfo,
    ScheduleSpec,
    SchedulingStats,
)
from kokaq.protocol import convert as cv
from kokaq.protocol.convert import LockHolder
from kokaq.protocol.errors import error_from_detail
from kokaq.protocol.v1 import kokaq_pb2 as pb

__all__ = [
    "Call",
    "ClusterStatus",
    "Member",
    "LockHolder",
    "LockKey",
    "auto_dedup_key",
    "make_spec",
    "queue_weights",
    "spec_message",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Call(Generic[_T]):
    name: str  # the RPC, e.g. "Enqueue"
    request: ProtoMessage
    parse: Callable[[Any], _T]


class _DedupKeys:
    """The dedup keys the SDK gives enqueues that have none, so a retry of the
    same call never adds a second message: 96 random bits per process (drawn
    again in a forked child), then a counter. A uuid4 per message cost more
    than the rest of building it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._prefix = f"sdk-{secrets.token_hex(12)}-"
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"  # count() is atomic under the GIL


auto_dedup_key = _DedupKeys()
os.register_at_fork(after_in_child=auto_dedup_key.reset)


def spec_message(spec: MessageSpec) -> pb.MessageSpec:
    """The wire form of a spec, with a dedup key made up when it has none.
    Raises ``InvalidArgument`` naming the field protobuf refuses."""
    try:
        message = cv.spec_to_proto(spec)
    except (TypeError, ValueError):
        raise _bad_field(spec) from None
    if spec.dedup_key is None:
        message.dedup_key = auto_dedup_key()
    return message


def _bad_field(spec: MessageSpec) -> InvalidArgument:
    """Name the field protobuf refused (a negative priority, a str payload...)."""
    for name in ("payload", "priority", "delay_ms", "run_at", "ttl_ms", "expires_at",
                 "max_deliveries", "dedup_key", "fairness_key", "cost"):  # fmt: skip
        try:
            pb.MessageSpec(**{name: getattr(spec, name)})
        except (TypeError, ValueError) as error:
            return InvalidArgument(name, str(error))
    return InvalidArgument("headers", "must be Headers of strings")


# -- namespaces and queues -------------------------------------------------------------


def create_namespace(name: str, config: NamespaceConfig | None) -> Call[NamespaceInfo]:
    request = pb.NamespaceRequest(namespace=name)
    if config is not None:
        cv.dict_to_message(config.to_dict(), request.config)
    return Call("CreateNamespace", request, cv.namespace_info_from_proto)


def get_namespace(name: str) -> Call[NamespaceInfo]:
    return Call("GetNamespace", pb.NamespaceRequest(namespace=name), cv.namespace_info_from_proto)


def list_namespaces() -> Call[list[NamespaceInfo]]:
    return Call(
        "ListNamespaces",
        pb.ListNamespacesRequest(),
        lambda r: [cv.namespace_info_from_proto(n) for n in r.namespaces],
    )


def update_namespace(name: str, config: NamespaceConfig) -> Call[NamespaceInfo]:
    request = pb.NamespaceRequest(namespace=name)
    cv.dict_to_message(config.to_dict(), request.config)
    request.config.SetInParent()
    return Call("UpdateNamespace", request, cv.namespace_info_from_proto)


def delete_namespace(name: str, force: bool) -> Call[None]:
    return Call("DeleteNamespace", pb.NamespaceRequest(namespace=name, force=force), _none)


def purge_namespace(name: str) -> Call[int]:
    return Call("PurgeNamespace", pb.NamespaceRequest(namespace=name), _count)


def create_queue(namespace: str, name: str, config: QueueConfig | None) -> Call[QueueInfo]:
    request = pb.QueueRequest(namespace=namespace, queue=name)
    if config is not None:
        cv.dict_to_message(config.to_dict(), request.config)
        request.config.SetInParent()
    return Call("CreateQueue", request, cv.queue_info_from_proto)


def get_queue(namespace: str, name: str) -> Call[QueueInfo]:
    return Call(
        "GetQueue", pb.QueueRequest(namespace=namespace, queue=name), cv.queue_info_from_proto
    )


def list_queues(namespace: str) -> Call[list[QueueInfo]]:
    return Call(
        "ListQueues",
        pb.ListQueuesRequest(namespace=namespace),
        lambda r: [cv.queue_info_from_proto(q) for q in r.queues],
    )


def update_queue(namespace: str, name: str, config: QueueConfig) -> Call[QueueInfo]:
    request = pb.QueueRequest(namespace=namespace, queue=name)
    cv.dict_to_message(config.to_dict(), request.config)
    request.config.SetInParent()
    return Call("UpdateQueue", request, cv.queue_info_from_proto)


def delete_queue(namespace: str, name: str, force: bool) -> Call[None]:
    return Call("DeleteQueue", pb.QueueRequest(namespace=namespace, queue=name, force=force), _none)


def purge_queue(namespace: str, name: str) -> Call[int]:
    return Call("PurgeQueue", pb.QueueRequest(namespace=namespace, queue=name), _count)


def put_schedule(namespace: str, name: str, spec: ScheduleSpec) -> Call[ScheduleInfo]:
    request = pb.Schedule(
        namespace=namespace,
        name=name,
        queue=spec.queue,
        cron=spec.cron,
        timezone=spec.timezone,
        template=cv.spec_to_proto(spec.template),
        paused=spec.paused,
        skip_if_running=spec.skip_if_running,
    )
    return Call("PutSchedule", request, cv.schedule_from_proto)


def get_schedule(namespace: str, name: str) -> Call[ScheduleInfo]:
    request = pb.ScheduleRequest(namespace=namespace, name=name)
    return Call("GetSchedule", request, cv.schedule_from_proto)


def list_schedules(namespace: str) -> Call[list[ScheduleInfo]]:
    return Call(
        "ListSchedules",
        pb.ListSchedulesRequest(namespace=namespace),
        lambda r: [cv.schedule_from_proto(s) for s in r.schedules],
    )


def pause_schedule(namespace: str, name: str) -> Call[ScheduleInfo]:
    request = pb.ScheduleRequest(namespace=namespace, name=name)
    return Call("PauseSchedule", request, cv.schedule_from_proto)


def resume_schedule(namespace: str, name: str) -> Call[ScheduleInfo]:
    request = pb.ScheduleRequest(namespace=namespace, name=name)
    return Call("ResumeSchedule", request, cv.schedule_from_proto)


def delete_schedule(namespace: str, name: str) -> Call[None]:
    return Call("DeleteSchedule", pb.ScheduleRequest(namespace=namespace, name=name), _none)


def trigger_schedule(namespace: str, name: str) -> Call[EnqueueResult]:
    request = pb.ScheduleRequest(namespace=namespace, name=name)
    return Call("TriggerSchedule", request, cv.enqueue_result_from_proto)


def pause_queue(namespace: str, name: str) -> Call[QueueInfo]:
    request = pb.QueueRequest(namespace=namespace, queue=name)
    return Call("PauseQueue", request, cv.queue_info_from_proto)


def resume_queue(namespace: str, name: str) -> Call[QueueInfo]:
    request = pb.QueueRequest(namespace=namespace, queue=name)
    return Call("ResumeQueue", request, cv.queue_info_from_proto)


def stats(namespace: str, name: str) -> Call[QueueStats]:
    return Call("GetStats", pb.QueueRequest(namespace=namespace, queue=name), cv.stats_from_proto)


# -- messages -----------------------------------------------------------------------------


def enqueue(namespace: str, queue: str, spec: MessageSpec) -> Call[EnqueueResult]:
    request = pb.EnqueueRequest(namespace=namespace, queue=queue, message=spec_message(spec))
    return Call("Enqueue", request, cv.enqueue_result_from_proto)


def enqueue_batch(
    namespace: str, queue: str, specs: Sequence[MessageSpec | pb.MessageSpec]
) -> Call[list[EnqueueResult]]:
    """Specs may be given already in wire form (``spec_message``)."""
    messages = [s if isinstance(s, pb.MessageSpec) else spec_message(s) for s in specs]
    request = pb.EnqueueBatchRequest(namespace=namespace, queue=queue, messages=messages)
    return Call(
        "EnqueueBatch", request, lambda r: [cv.enqueue_result_from_proto(x) for x in r.results]
    )


def dequeue(
    namespace: str,
    queues: Sequence[tuple[str, int]],
    max_count: int,
    visibility_timeout_ms: int | None,
) -> Call[list[MessageView]]:
    request = pb.DequeueRequest(
        namespace=namespace,
        queues=[pb.QueueWeight(queue=q, weight=w) for q, w in queues],
        max_count=max_count,
        visibility_timeout_ms=visibility_timeout_ms,
    )
    return Call("Dequeue", request, lambda r: [cv.message_from_proto(m) for m in r.messages])


def peek(namespace: str, queue: str, count: int) -> Call[list[MessageView]]:
    request = pb.PeekRequest(namespace=namespace, queue=queue, count=count)
    return Call("Peek", request, lambda r: [cv.message_from_proto(m) for m in r.messages])


class LockKey(NamedTuple):
    """A lease named by hand (the CLI's ``kokaq ack QUEUE ID LOCK``)."""

    namespace: str
    queue: str
    id: str
    lock_id: str


def ack(view: LockHolder, result: bytes | None = None) -> Call[None]:
    if result is None:
        return Call("Ack", cv.lock_ref(view), _none)
    if not isinstance(result, bytes):
        raise InvalidArgument("result", "must be bytes")
    return Call("AckBatch", cv.ack_of_one(cv.lock_ref(view), result), _acked_one)


def _acked_one(response: pb.AckBatchResponse) -> None:
    (detail,) = response.results
    if detail.type:
        raise cv.ack_item_error(error_from_detail(detail))


def ack_batch(
    namespace: str, queue: str, pairs: Sequence[tuple[str, str]]
) -> Call[list[KokaqError | None]]:
    request = pb.AckBatchRequest(
        namespace=namespace,
        queue=queue,
        items=[pb.AckBatchItem(message_id=m, lock_id=lk) for m, lk in pairs],
    )
    return Call(
        "AckBatch",
        request,
        lambda r: [error_from_detail(d) if d.type else None for d in r.results],
    )


def nack(
    view: LockHolder,
    reason: FailureReason,
    error: str | None,
    delay_ms: int | None,
    dead_letter: bool,
) -> Call[NackResult]:
    request = pb.NackRequest(
        lock=cv.lock_ref(view),
        reason=cv.failure_reason_to_proto(reason),
        error=error,
        delay_ms=delay_ms,
        dead_letter=dead_letter,
    )
    return Call(
        "Nack",
        request,
        lambda r: NackResult(
            NackOutcome(r.outcome), r.visible_at if r.HasField("visible_at") else None
        ),
    )


def extend(view: LockHolder, add_ms: int, from_deadline: int | None = None) -> Call[int]:
    """``from_deadline``: the deadline the caller holds, so that a retry after a
    lost answer does not extend twice (see ``Engine.extend``)."""
    request = pb.ExtendRequest(lock=cv.lock_ref(view), add_ms=add_ms, from_deadline=from_deadline)
    return Call("Extend", request, _deadline)


def refresh(view: LockHolder) -> Call[int]:
    return Call("Refresh", cv.lock_ref(view), _deadline)


def report_progress(view: LockHolder, progress: str) -> Call[int]:
    request = pb.ProgressRequest(lock=cv.lock_ref(view), progress=progress)
    return Call("ReportProgress", request, _deadline)


def set_visibility_timeout(view: LockHolder, timeout_ms: int) -> Call[int]:
    request = pb.SetVisibilityTimeoutRequest(lock=cv.lock_ref(view), timeout_ms=timeout_ms)
    return Call("SetVisibilityTimeout", request, _deadline)


def release(view: LockHolder, delay_ms: int | None, visible_at: int | None) -> Call[int]:
    request = pb.ReleaseRequest(lock=cv.lock_ref(view), delay_ms=delay_ms, visible_at=visible_at)
    return Call("Release", request, lambda r: int(r.visible_at))


def get_message(namespace: str, queue: str, message_id: str) -> Call[MessageView]:
    request = pb.MessageRef(namespace=namespace, queue=queue, message_id=message_id)
    return Call("GetMessage", request, cv.message_from_proto)


def scheduling_stats(namespace: str, queue: str, key_limit: int) -> Call[SchedulingStats]:
    request = pb.SchedulingStatsRequest(namespace=namespace, queue=queue, key_limit=key_limit)
    return Call("GetSchedulingStats", request, cv.scheduling_stats_from_proto)


def list_messages(
    namespace: str, queue: str, states: Sequence[MessageState | str], limit: int
) -> Call[list[MessageView]]:
    request = pb.ListMessagesRequest(namespace=namespace, queue=queue, limit=limit)
    try:
        request.states.extend(cv.state_to_proto(MessageState(s)) for s in states)
    except ValueError:
        raise InvalidArgument("states", "name ready, delayed, leased, succeeded or dead") from None
    return Call("ListMessages", request, lambda r: [cv.message_from_proto(m) for m in r.messages])


def find_message(namespace: str, message_id: str) -> Call[MessageView]:
    request = pb.FindMessageRequest(namespace=namespace, message_id=message_id)
    return Call("FindMessage", request, cv.message_from_proto)


def cancel_message(namespace: str, queue: str, message_id: str) -> Call[MessageView]:
    request = pb.MessageRef(namespace=namespace, queue=queue, message_id=message_id)
    return Call("CancelMessage", request, cv.message_from_proto)


def reprioritize(
    namespace: str,
    queue: str,
    priority: int,
    message_id: str | None,
    where: MessageFilter | None,
) -> Call[int]:
    request = pb.ReprioritizeRequest(namespace=namespace, queue=queue, priority=priority)
    if message_id is not None:
        request.message_id = message_id
    elif where is not None:
        request.where.CopyFrom(cv.filter_to_proto(where))
    return Call("Reprioritize", request, _count)


# -- dead letters ---------------------------------------------------------------------------


def list_dead(namespace: str, queue: str, limit: int, after: int | None) -> Call[DeadPage]:
    request = pb.ListDeadRequest(
        namespace=namespace, queue=queue, limit=limit, after=None if after is None else str(after)
    )
    return Call(
        "ListDead",
        request,
        lambda r: DeadPage(
            [cv.message_from_proto(m) for m in r.messages],
            int(r.next_cursor) if r.HasField("next_cursor") else None,
        ),
    )


def redrive(namespace: str, queue: str, message_ids: Sequence[str] | None) -> Call[int]:
    request = pb.DeadRequest(namespace=namespace, queue=queue, message_ids=message_ids or [])
    return Call("RedriveDead", request, _count)


def purge_dead(namespace: str, queue: str, message_ids: Sequence[str] | None) -> Call[int]:
    request = pb.DeadRequest(namespace=namespace, queue=queue, message_ids=message_ids or [])
    return Call("PurgeDead", request, _count)


# -- the cluster ------------------------------------------------------------------------------


class Member(NamedTuple):
    address: str  # Raft address
    connected: bool
    match_index: int | None  # known on the leader only
    log_format: int | None = None  # the newest it applies, once announced


class ClusterStatus(NamedTuple):
    """One node's view of its Raft group."""

    node: str  # this node's Raft address
    role: str  # "leader", "follower" or "candidate"
    leader: str | None  # the leader's Raft address
    leader_grpc: str | None  # where writes go
    term: int
    members: list[Member]  # the other members
    commit_index: int
    applied_index: int
    has_quorum: bool
    state_digest: str | None = None  # asked with cluster_status(with_digest=True)
    log_format: int = 1  # the one the members agreed on
    node_log_format: int | None = None  # this node's, once announced


def _cluster_status(r: Any) -> ClusterStatus:
    return ClusterStatus(
        node=r.node,
        role=r.role,
        leader=r.leader if r.HasField("leader") else None,
        leader_grpc=r.leader_grpc if r.HasField("leader_grpc") else None,
        term=r.term,
        members=[
            Member(
                m.address,
                m.connected,
                m.match_index if m.HasField("match_index") else None,
                m.log_format if m.HasField("log_format") else None,
            )
            for m in r.members
        ],
        commit_index=r.commit_index,
        applied_index=r.applied_index,
        has_quorum=r.has_quorum,
        state_digest=r.state_digest if r.HasField("state_digest") else None,
        log_format=r.log_format,
        node_log_format=r.node_log_format if r.HasField("node_log_format") else None,
    )


def cluster_status(with_digest: bool = False) -> Call[ClusterStatus]:
    return Call("Status", pb.StatusRequest(with_digest=with_digest), _cluster_status)


def add_member(address: str) -> Call[ClusterStatus]:
    return Call("AddMember", pb.MemberRequest(address=address), _cluster_status)


def remove_member(address: str) -> Call[ClusterStatus]:
    return Call("RemoveMember", pb.MemberRequest(address=address), _cluster_status)


def transfer_leadership(to: str | None) -> Call[ClusterStatus]:
    return Call("TransferLeadership", pb.TransferRequest(to=to), _cluster_status)


# -- helpers ---------------------------------------------------------------------------------


def queue_weights(
    queues: str | Mapping[str, int] | Sequence[tuple[str, int]],
) -> list[tuple[str, int]]:
    """One queue name, ``{name: weight}`` or ``[(name, weight)]`` as pairs."""
    if isinstance(queues, str):
        return [(queues, 1)]
    if isinstance(queues, Mapping):
        return list(queues.items())
    return list(queues)


def make_spec(
    payload: bytes | str,
    priority: int,
    headers: Headers | Mapping[str, str] | None,
    **options: Any,
) -> MessageSpec:
    """A MessageSpec from friendly arguments: str payloads are UTF-8; a plain
    mapping of headers becomes user headers."""
    data = payload.encode() if isinstance(payload, str) else payload
    if headers is not None and not isinstance(headers, Headers):
        headers = Headers(user=dict(headers))
    return MessageSpec(payload=data, priority=priority, headers=headers, **options)


def _none(_: Any) -> None:
    return None


def _count(response: Any) -> int:
    return int(response.count)


def _deadline(response: Any) -> int:
    return int(response.lock_deadline)
