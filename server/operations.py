"""Every RPC of the node as one table: how to run it on an engine, how to
answer it, whether it is a write, which role may call it.

The table drives everything else: the gRPC handlers are generated from it,
replication carries ``(rpc name, request bytes, ids)`` and applies it with
``run``, and the in-process test transport calls the same ``run`` on a local
engine. Writes go through the Raft log; reads run on the leader's engine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from google.protobuf.message import Message as ProtoMessage

from kokaq.core import (
    MAX_BATCH,
    Engine,
    FailureReason,
    InvalidArgument,
    KokaqError,
    NackResult,
)
from kokaq.protocol import convert as cv
from kokaq.protocol.errors import error_detail
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.schedules import stamp_first_fire

__all__ = ["OPERATIONS", "Operation", "Role", "ids_needed", "state_digest"]


class Role:
    ADMIN = "admin"
    PRODUCER = "producer"
    CONSUMER = "consumer"
    ANY = "any"  # every authenticated key


Run = Callable[[Engine, Any, int, Sequence[str]], Any]


class Operation(NamedTuple):
    service: str  # "DataPlane", "ControlPlane", "Cluster"; "Internal": the log's only, no RPC
    request: type[ProtoMessage]
    response: type[ProtoMessage]
    run: Run  # (engine, request, now, ids) -> a core result; raises KokaqError
    respond: Callable[[Any], ProtoMessage]
    write: bool
    roles: tuple[str, ...]
    namespace: Callable[[Any], str] = lambda request: str(request.namespace)
    # The request as it goes to the log, completed by the proposer (a schedule's
    # first fire time): the engine reads no clock.
    prepare: Callable[[Any], Any] | None = None


def state_digest(engine: Engine) -> str:
    """SHA-256 of the engine's snapshot: replicas that applied the same entries agree."""
    return hashlib.sha256(engine.snapshot()).hexdigest()


def ids_needed(name: str, request: Any) -> int:
    """How many fresh ids the proposer must stamp on a write."""
    if name == "EnqueueBatch":
        return min(len(request.messages), MAX_BATCH + 1)
    return 1 if name in ("Enqueue", "Dequeue", "FireSchedule", "TriggerSchedule") else 0


# -- data plane --------------------------------------------------------------------


def _enqueue(engine: Engine, r: pb.EnqueueRequest, now: int, ids: Sequence[str]) -> Any:
    spec = cv.spec_from_proto(r.message)
    return engine.enqueue(
        r.namespace,
        r.queue,
        spec.payload,
        message_id=ids[0],
        now=now,
        priority=spec.priority,
        headers=spec.headers,
        delay_ms=spec.delay_ms,
        run_at=spec.run_at,
        ttl_ms=spec.ttl_ms,
        expires_at=spec.expires_at,
        max_deliveries=spec.max_deliveries,
        dedup_key=spec.dedup_key,
        fairness_key=spec.fairness_key,
        cost=spec.cost,
        backoff=spec.backoff,
    )


def _enqueue_batch(engine: Engine, r: pb.EnqueueBatchRequest, now: int, ids: Sequence[str]) -> Any:
    if not 1 <= len(r.messages) <= MAX_BATCH:
        raise InvalidArgument("messages", f"must hold 1 to {MAX_BATCH} messages")
    specs = [cv.spec_from_proto(m) for m in r.messages]
    try:
        return engine.enqueue_batch(r.namespace, r.queue, specs, message_ids=ids, now=now)
    except InvalidArgument as error:
        if not error.field.startswith("items"):
            raise
        # The engine's "items[3].priority" is the request's "messages[3].priority".
        details = error.details()
        details["field"] = "messages" + error.field.removeprefix("items")
        raise type(error)(**details) from None


def _dequeue(engine: Engine, r: pb.DequeueRequest, now: int, ids: Sequence[str]) -> Any:
    if not r.queues:
        raise InvalidArgument("queues", "name at least one queue")
    visibility = r.visibility_timeout_ms if r.HasField("visibility_timeout_ms") else None
    max_count = r.max_count or 1
    if len(r.queues) == 1:
        return engine.dequeue(
            r.namespace,
            r.queues[0].queue,
            lock_id=ids[0],
            now=now,
            max_count=max_count,
            visibility_timeout_ms=visibility,
        )
    return engine.dequeue_weighted(
        r.namespace,
        [(q.queue, q.weight) for q in r.queues],
        lock_id=ids[0],
        now=now,
        max_count=max_count,
        visibility_timeout_ms=visibility,
    )


def _messages(views: Any) -> pb.DequeueResponse:
    return pb.DequeueResponse(messages=[cv.message_to_proto(v) for v in views])


def _peeked(views: Any) -> pb.PeekResponse:
    return pb.PeekResponse(messages=[cv.message_to_proto(v) for v in views])


def _ack_batch(engine: Engine, r: pb.AckBatchRequest, now: int, ids: Sequence[str]) -> Any:
    if not 1 <= len(r.items) <= MAX_BATCH:
        raise InvalidArgument("items", f"must hold 1 to {MAX_BATCH} items")
    items = [
        (item.message_id, item.lock_id, item.result)
        if item.result
        else (item.message_id, item.lock_id)
        for item in r.items
    ]
    return engine.ack_batch(r.namespace, r.queue, items, now=now)


def _acked(results: list[KokaqError | None]) -> pb.AckBatchResponse:
    return pb.AckBatchResponse(
        results=[pb.ErrorDetail() if e is None else error_detail(e) for e in results]
    )


def _nack(engine: Engine, r: pb.NackRequest, now: int, ids: Sequence[str]) -> Any:
    lock = r.lock
    reason = cv.failure_reason_from_proto(r.reason) if r.reason else FailureReason.PROCESSING_ERROR
    return engine.nack(
        lock.namespace,
        lock.queue,
        lock.message_id,
        lock.lock_id,
        now=now,
        reason=reason,
        error=r.error if r.HasField("error") else None,
        delay_ms=r.delay_ms if r.HasField("delay_ms") else None,
        dead_letter=r.dead_letter,
    )


def _nacked(result: NackResult) -> pb.NackResponse:
    return pb.NackResponse(outcome=str(result.outcome), visible_at=result.visible_at)


def _release(engine: Engine, r: pb.ReleaseRequest, now: int, ids: Sequence[str]) -> Any:
    lock = r.lock
    return engine.release(
        lock.namespace,
        lock.queue,
        lock.message_id,
        lock.lock_id,
        now=now,
        delay_ms=r.delay_ms if r.HasField("delay_ms") else None,
        visible_at=r.visible_at if r.HasField("visible_at") else None,
    )


def _reprioritize(engine: Engine, r: pb.ReprioritizeRequest, now: int, ids: Sequence[str]) -> Any:
    target = r.WhichOneof("target")
    if target is None:
        raise InvalidArgument("target", "give message_id or where")
    if target == "message_id":
        return engine.reprioritize(
            r.namespace, r.queue, r.priority, now=now, message_id=r.message_id
        )
    where = cv.filter_from_proto(r.where)
    return engine.reprioritize(r.namespace, r.queue, r.priority, now=now, where=where)


def _list_messages(engine: Engine, r: pb.ListMessagesRequest, now: int, ids: Sequence[str]) -> Any:
    states = []
    for number in r.states:
        state = cv.state_from_proto(number)
        if state is None:
            raise InvalidArgument("states", "name ready, delayed, leased, succeeded or dead")
        states.append(state)
    return engine.list_messages(r.namespace, r.queue, states=states, limit=r.limit or 100)


def _deadline(deadline: int) -> pb.LockDeadline:
    return pb.LockDeadline(lock_deadline=deadline)


def _count(count: int) -> pb.CountResponse:
    return pb.CountResponse(count=count)


def _empty(_: Any) -> pb.Empty:
    return pb.Empty()


def _lock_namespace(request: Any) -> str:
    return str(request.lock.namespace)


# -- control plane -------------------------------------------------------------------


def _namespace_config(r: pb.NamespaceRequest) -> Any:
    return cv.namespace_config_from_proto(r.config) if r.HasField("config") else None


def _queue_config(r: pb.QueueRequest) -> Any:
    return cv.queue_config_from_proto(r.config) if r.HasField("config") else None


def _update_namespace(engine: Engine, r: pb.NamespaceRequest, now: int, ids: Sequence[str]) -> Any:
    config = _namespace_config(r)
    if config is None:
        raise InvalidArgument("config", "give the new configuration")
    return engine.update_namespace(r.namespace, config, now=now)


def _update_queue(engine: Engine, r: pb.QueueRequest, now: int, ids: Sequence[str]) -> Any:
    config = _queue_config(r)
    if config is None:
        raise InvalidArgument("config", "give the new configuration")
    return engine.update_queue(r.namespace, r.queue, config, now=now)


def _list_dead(engine: Engine, r: pb.ListDeadRequest, now: int, ids: Sequence[str]) -> Any:
    after = None
    if r.HasField("after"):
        if not r.after.isdigit():
            raise InvalidArgument("after", "must be the next_cursor of a previous page")
        after = int(r.after)
    return engine.list_dead(r.namespace, r.queue, limit=r.limit or 100, after=after)


def _dead_page(page: Any) -> pb.ListDeadResponse:
    return pb.ListDeadResponse(
        messages=[cv.message_to_proto(v) for v in page.messages],
        next_cursor=None if page.next_cursor is None else str(page.next_cursor),
    )


def _dead_ids(r: pb.DeadRequest) -> list[str] | None:
    return list(r.message_ids) or None


_P, _C, _A, _ANY = Role.PRODUCER, Role.CONSUMER, Role.ADMIN, Role.ANY
_D, _CP, _INTERNAL = "DataPlane", "ControlPlane", "Internal"

OPERATIONS: dict[str, Operation] = {
    # data plane: writes
    "Enqueue": Operation(
        _D, pb.EnqueueRequest, pb.EnqueueResult, _enqueue, cv.enqueue_result_to_proto, True, (_P,)
    ),
    "EnqueueBatch": Operation(
        _D,
        pb.EnqueueBatchRequest,
        pb.EnqueueBatchResponse,
        _enqueue_batch,
        cv.enqueue_results_to_proto,
        True,
        (_P,),
    ),
    "Dequeue": Operation(
        _D, pb.DequeueRequest, pb.DequeueResponse, _dequeue, _messages, True, (_C,)
    ),
    "Peek": Operation(
        _D,
        pb.PeekRequest,
        pb.PeekResponse,
        lambda e, r, now, ids: e.peek(r.namespace, r.queue, now=now, count=r.count or 1),
        _peeked,
        True,  # it applies due transitions first, so it goes through the log
        (_P, _C),
    ),
    "Ack": Operation(
        _D,
        pb.LockRef,
        pb.AckResponse,
        lambda e, r, now, ids: e.ack(r.namespace, r.queue, r.message_id, r.lock_id, now=now),
        lambda _: pb.AckResponse(),
        True,
        (_C,),
    ),
    "AckBatch": Operation(
        _D, pb.AckBatchRequest, pb.AckBatchResponse, _ack_batch, _acked, True, (_C,)
    ),
    "Nack": Operation(
        _D, pb.NackRequest, pb.NackResponse, _nack, _nacked, True, (_C,), _lock_namespace
    ),
    "Extend": Operation(
        _D,
        pb.ExtendRequest,
        pb.LockDeadline,
        lambda e, r, now, ids: e.extend(
            r.lock.namespace,
            r.lock.queue,
            r.lock.message_id,
            r.lock.lock_id,
            add_ms=r.add_ms,
            now=now,
            from_deadline=r.from_deadline if r.HasField("from_deadline") else None,
        ),
        _deadline,
        True,
        (_C,),
        _lock_namespace,
    ),
    "Refresh": Operation(
        _D,
        pb.LockRef,
        pb.LockDeadline,
        lambda e, r, now, ids: e.refresh(r.namespace, r.queue, r.message_id, r.lock_id, now=now),
        _deadline,
        True,
        (_C,),
    ),
    "SetVisibilityTimeout": Operation(
        _D,
        pb.SetVisibilityTimeoutRequest,
        pb.LockDeadline,
        lambda e, r, now, ids: e.set_visibility_timeout(
            r.lock.namespace,
            r.lock.queue,
            r.lock.message_id,
            r.lock.lock_id,
            timeout_ms=r.timeout_ms,
            now=now,
        ),
        _deadline,
        True,
        (_C,),
        _lock_namespace,
    ),
    "ReportProgress": Operation(
        _D,
        pb.ProgressRequest,
        pb.LockDeadline,
        lambda e, r, now, ids: e.report_progress(
            r.lock.namespace, r.lock.queue, r.lock.message_id, r.lock.lock_id, r.progress, now=now
        ),
        _deadline,
        True,
        (_C,),
        _lock_namespace,
    ),
    "Release": Operation(
        _D,
        pb.ReleaseRequest,
        pb.ReleaseResponse,
        _release,
        lambda at: pb.ReleaseResponse(visible_at=at),
        True,
        (_C,),
        _lock_namespace,
    ),
    "Reprioritize": Operation(
        _D, pb.ReprioritizeRequest, pb.CountResponse, _reprioritize, _count, True, (_A, _P)
    ),
    # data plane: reads
    "GetMessage": Operation(
        _D,
        pb.MessageRef,
        pb.Message,
        lambda e, r, now, ids: e.get_message(r.namespace, r.queue, r.message_id),
        cv.message_to_proto,
        False,
        (_ANY,),
    ),
    "ListMessages": Operation(
        _D,
        pb.ListMessagesRequest,
        pb.ListMessagesResponse,
        _list_messages,
        lambda views: pb.ListMessagesResponse(messages=[cv.message_to_proto(v) for v in views]),
        False,
        (_ANY,),
    ),
    "FindMessage": Operation(
        _D,
        pb.FindMessageRequest,
        pb.Message,
        lambda e, r, now, ids: e.find_message(r.namespace, r.message_id),
        cv.message_to_proto,
        False,
        (_ANY,),
    ),
    "CancelMessage": Operation(
        _D,
        pb.MessageRef,
        pb.Message,
        lambda e, r, now, ids: e.cancel_message(r.namespace, r.queue, r.message_id, now=now),
        cv.message_to_proto,
        True,
        (_A, _P),
    ),
    # control plane
    "CreateNamespace": Operation(
        _CP,
        pb.NamespaceRequest,
        pb.NamespaceInfo,
        lambda e, r, now, ids: e.create_namespace(r.namespace, _namespace_config(r), now=now),
        cv.namespace_info_to_proto,
        True,
        (_A,),
    ),
    "GetNamespace": Operation(
        _CP,
        pb.NamespaceRequest,
        pb.NamespaceInfo,
        lambda e, r, now, ids: e.get_namespace(r.namespace),
        cv.namespace_info_to_proto,
        False,
        (_ANY,),
    ),
    "ListNamespaces": Operation(
        _CP,
        pb.ListNamespacesRequest,
        pb.ListNamespacesResponse,
        lambda e, r, now, ids: e.list_namespaces(),
        lambda infos: pb.ListNamespacesResponse(
            namespaces=[cv.namespace_info_to_proto(i) for i in infos]
        ),
        False,
        (_ANY,),
        lambda r: "",
    ),
    "UpdateNamespace": Operation(
        _CP,
        pb.NamespaceRequest,
        pb.NamespaceInfo,
        _update_namespace,
        cv.namespace_info_to_proto,
        True,
        (_A,),
    ),
    "DeleteNamespace": Operation(
        _CP,
        pb.NamespaceRequest,
        pb.Empty,
        lambda e, r, now, ids: e.delete_namespace(r.namespace, force=r.force, now=now),
        _empty,
        True,
        (_A,),
    ),
    "PurgeNamespace": Operation(
        _CP,
        pb.NamespaceRequest,
        pb.CountResponse,
        lambda e, r, now, ids: e.purge_namespace(r.namespace, now=now),
        _count,
        True,
        (_A,),
    ),
    "CreateQueue": Operation(
        _CP,
        pb.QueueRequest,
        pb.QueueInfo,
        lambda e, r, now, ids: e.create_queue(r.namespace, r.queue, _queue_config(r), now=now),
        cv.queue_info_to_proto,
        True,
        (_A,),
    ),
    "GetQueue": Operation(
        _CP,
        pb.QueueRequest,
        pb.QueueInfo,
        lambda e, r, now, ids: e.get_queue(r.namespace, r.queue),
        cv.queue_info_to_proto,
        False,
        (_ANY,),
    ),
    "ListQueues": Operation(
        _CP,
        pb.ListQueuesRequest,
        pb.ListQueuesResponse,
        lambda e, r, now, ids: e.list_queues(r.namespace),
        lambda infos: pb.ListQueuesResponse(queues=[cv.queue_info_to_proto(i) for i in infos]),
        False,
        (_ANY,),
    ),
    "UpdateQueue": Operation(
        _CP, pb.QueueRequest, pb.QueueInfo, _update_queue, cv.queue_info_to_proto, True, (_A,)
    ),
    "DeleteQueue": Operation(
        _CP,
        pb.QueueRequest,
        pb.Empty,
        lambda e, r, now, ids: e.delete_queue(r.namespace, r.queue, force=r.force, now=now),
        _empty,
        True,
        (_A,),
    ),
    "PurgeQueue": Operation(
        _CP,
        pb.QueueRequest,
        pb.CountResponse,
        lambda e, r, now, ids: e.purge_queue(r.namespace, r.queue, now=now),
        _count,
        True,
        (_A,),
    ),
    "PauseQueue": Operation(
        _CP,
        pb.QueueRequest,
        pb.QueueInfo,
        lambda e, r, now, ids: e.pause_queue(r.namespace, r.queue, now=now),
        cv.queue_info_to_proto,
        True,
        (_A,),
    ),
    "ResumeQueue": Operation(
        _CP,
        pb.QueueRequest,
        pb.QueueInfo,
        lambda e, r, now, ids: e.resume_queue(r.namespace, r.queue, now=now),
        cv.queue_info_to_proto,
        True,
        (_A,),
    ),
    "GetStats": Operation(
        _CP,
        pb.QueueRequest,
        pb.QueueStats,
        lambda e, r, now, ids: e.stats(r.namespace, r.queue, now=now),
        cv.stats_to_proto,
        False,
        (_ANY,),
    ),
    "GetSchedulingStats": Operation(
        _CP,
        pb.SchedulingStatsRequest,
        pb.SchedulingStats,
        lambda e, r, now, ids: e.scheduling_stats(
            r.namespace, r.queue, key_limit=r.key_limit if r.HasField("key_limit") else 100
        ),
        cv.scheduling_stats_to_proto,
        False,
        (_ANY,),
    ),
    "ListDead": Operation(
        _CP, pb.ListDeadRequest, pb.ListDeadResponse, _list_dead, _dead_page, False, (_ANY,)
    ),
    "RedriveDead": Operation(
        _CP,
        pb.DeadRequest,
        pb.CountResponse,
        lambda e, r, now, ids: e.redrive(r.namespace, r.queue, now=now, message_ids=_dead_ids(r)),
        _count,
        True,
        (_A,),
    ),
    "PurgeDead": Operation(
        _CP,
        pb.DeadRequest,
        pb.CountResponse,
        lambda e, r, now, ids: e.purge_dead(
            r.namespace, r.queue, now=now, message_ids=_dead_ids(r)
        ),
        _count,
        True,
        (_A,),
    ),
    "PutSchedule": Operation(
        _CP,
        pb.Schedule,
        pb.Schedule,
        lambda e, r, now, ids: e.put_schedule(
            r.namespace,
            r.name,
            cv.schedule_spec_from_proto(r),
            next_fire_at=r.next_fire_at,
            now=now,
        ),
        cv.schedule_to_proto,
        True,
        (_A,),
        prepare=stamp_first_fire,
    ),
    "GetSchedule": Operation(
        _CP,
        pb.ScheduleRequest,
        pb.Schedule,
        lambda e, r, now, ids: e.get_schedule(r.namespace, r.name),
        cv.schedule_to_proto,
        False,
        (_ANY,),
    ),
    "ListSchedules": Operation(
        _CP,
        pb.ListSchedulesRequest,
        pb.ListSchedulesResponse,
        lambda e, r, now, ids: e.list_schedules(r.namespace),
        lambda infos: pb.ListSchedulesResponse(schedules=[cv.schedule_to_proto(i) for i in infos]),
        False,
        (_ANY,),
    ),
    "PauseSchedule": Operation(
        _CP,
        pb.ScheduleRequest,
        pb.Schedule,
        lambda e, r, now, ids: e.pause_schedule(r.namespace, r.name, now=now),
        cv.schedule_to_proto,
        True,
        (_A,),
    ),
    "ResumeSchedule": Operation(
        _CP,
        pb.ScheduleRequest,
        pb.Schedule,
        lambda e, r, now, ids: e.resume_schedule(r.namespace, r.name, now=now),
        cv.schedule_to_proto,
        True,
        (_A,),
    ),
    "DeleteSchedule": Operation(
        _CP,
        pb.ScheduleRequest,
        pb.Empty,
        lambda e, r, now, ids: e.delete_schedule(r.namespace, r.name, now=now),
        _empty,
        True,
        (_A,),
    ),
    "TriggerSchedule": Operation(
        _CP,
        pb.ScheduleRequest,
        pb.EnqueueResult,
        lambda e, r, now, ids: e.trigger_schedule(r.namespace, r.name, message_id=ids[0], now=now),
        cv.enqueue_result_to_proto,
        True,
        (_A, _P),
    ),
    "FireSchedule": Operation(
        _INTERNAL,
        pb.FireScheduleRequest,
        pb.EnqueueResult,
        lambda e, r, now, ids: e.fire_schedule(
            r.namespace,
            r.name,
            fire_at=r.fire_at,
            next_fire_at=r.next_fire_at,
            message_id=ids[0],
            now=now,
        ),
        lambda result: cv.enqueue_result_to_proto(result) if result else pb.EnqueueResult(),
        True,
        (_A,),
    ),
}
