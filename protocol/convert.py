"""Conversions between wire messages (``kokaq.protocol.v1``) and core values.

Configuration messages mirror the ``to_dict`` form of the core dataclasses
field for field, so one generic pair (``message_to_dict`` / ``dict_to_message``)
serves them all; a field left out of a message takes the core default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from google.protobuf.message import Message as ProtoMessage

from kokaq.core import (
    BackoffPolicy,
    BandShare,
    EnqueueResult,
    FailureReason,
    Headers,
    InvalidArgument,
    KeyShare,
    KokaqError,
    MessageFilter,
    MessageSpec,
    MessageState,
    MessageView,
    NamespaceConfig,
    NamespaceInfo,
    QueueConfig,
    QueueInfo,
    QueueStats,
    ScheduleInfo,
    ScheduleSpec,
    SchedulingStats,
)
from kokaq.protocol.v1 import kokaq_pb2 as pb

__all__ = [
    "LockHolder",
    "ack_item_error",
    "ack_of_one",
    "dict_to_message",
    "enqueue_result_from_proto",
    "enqueue_result_to_proto",
    "enqueue_results_to_proto",
    "failure_reason_from_proto",
    "failure_reason_to_proto",
    "filter_from_proto",
    "filter_to_proto",
    "headers_from_proto",
    "headers_to_proto",
    "lock_ref",
    "message_from_proto",
    "message_to_dict",
    "message_to_proto",
    "namespace_config_from_proto",
    "namespace_info_from_proto",
    "namespace_info_to_proto",
    "queue_config_from_proto",
    "queue_info_from_proto",
    "queue_info_to_proto",
    "schedule_from_proto",
    "schedule_spec_from_proto",
    "schedule_to_proto",
    "spec_from_proto",
    "spec_to_proto",
    "stats_from_proto",
    "stats_to_proto",
    "state_from_proto",
    "state_to_proto",
]

_M = TypeVar("_M", bound=ProtoMessage)

# -- enums: the wire names are the core values upper-cased, with a prefix --------

_STATES: dict[MessageState, Any] = {
    state: pb.MessageState.Value(f"MESSAGE_STATE_{state.name}") for state in MessageState
}
_STATES_BACK: dict[int, MessageState] = {number: state for state, number in _STATES.items()}
_REASONS: dict[FailureReason, Any] = {
    reason: pb.FailureReason.Value(f"FAILURE_REASON_{reason.name}") for reason in FailureReason
}
_REASONS_BACK: dict[int, FailureReason] = {number: reason for reason, number in _REASONS.items()}


def state_to_proto(state: MessageState | None) -> Any:
    return 0 if state is None else _STATES[state]


def state_from_proto(number: int) -> MessageState | None:
    return _STATES_BACK.get(number)


def failure_reason_to_proto(reason: FailureReason | None) -> Any:
    return 0 if reason is None else _REASONS[reason]


def failure_reason_from_proto(number: int) -> FailureReason:
    """Unknown numbers (a newer peer) read as UNSPECIFIED rather than failing."""
    return _REASONS_BACK.get(number, FailureReason.UNSPECIFIED)


# -- generic: config-shaped messages <-> plain dicts ---------------------------------


def message_to_dict(message: ProtoMessage) -> dict[str, Any]:
    """The fields that are set (presence fields) or carry a value (the rest)."""
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        name = field.name
        value = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            if value:
                out[name] = dict(value)
        elif field.is_repeated:
            if value:
                out[name] = [
                    message_to_dict(v) if field.message_type is not None else v for v in value
                ]
        elif field.has_presence:
            if message.HasField(name):
                out[name] = message_to_dict(value) if field.message_type is not None else value
        else:
            out[name] = value
    return out


def dict_to_message(data: Mapping[str, Any], message: _M) -> _M:
    """Fill ``message`` from a ``to_dict`` form; None values are left unset."""
    fields = message.DESCRIPTOR.fields_by_name
    for name, value in data.items():
        field = fields.get(name)
        if value is None or field is None:
            continue
        target = getattr(message, name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            target.update(value)
        elif field.is_repeated:
            if field.message_type is not None:
                for item in value:
                    dict_to_message(item, target.add())
            else:
                target.extend(value)
        elif field.message_type is not None:
            dict_to_message(value, target)
        else:
            setattr(message, name, value)
    return message


def queue_config_from_proto(message: pb.QueueConfig) -> QueueConfig:
    """Raises ConfigError naming the field (validation is the engine's)."""
    return QueueConfig.from_dict(message_to_dict(message))


def namespace_config_from_proto(message: pb.NamespaceConfig) -> NamespaceConfig:
    return NamespaceConfig.from_dict(message_to_dict(message))


def queue_info_to_proto(info: QueueInfo) -> pb.QueueInfo:
    out = pb.QueueInfo(
        namespace=info.namespace,
        name=info.name,
        created_at=info.created_at,
        updated_at=info.updated_at,
        paused_at=info.paused_at,
    )
    dict_to_message(info.config.to_dict(), out.config)
    return out


def queue_info_from_proto(message: pb.QueueInfo) -> QueueInfo:
    return QueueInfo(
        namespace=message.namespace,
        name=message.name,
        config=queue_config_from_proto(message.config),
        created_at=message.created_at,
        updated_at=message.updated_at,
        paused_at=message.paused_at if message.HasField("paused_at") else None,
    )


def namespace_info_to_proto(info: NamespaceInfo) -> pb.NamespaceInfo:
    out = pb.NamespaceInfo(
        name=info.name,
        created_at=info.created_at,
        updated_at=info.updated_at,
        queue_count=info.queue_count,
    )
    dict_to_message(info.config.to_dict(), out.config)
    return out


def namespace_info_from_proto(message: pb.NamespaceInfo) -> NamespaceInfo:
    return NamespaceInfo(
        name=message.name,
        config=namespace_config_from_proto(message.config),
        created_at=message.created_at,
        updated_at=message.updated_at,
        queue_count=message.queue_count,
    )


def stats_to_proto(stats: QueueStats) -> pb.QueueStats:
    return pb.QueueStats(
        ready=stats.ready,
        delayed=stats.delayed,
        leased=stats.leased,
        succeeded=stats.succeeded,
        dead=stats.dead,
        oldest_ready_age_ms=stats.oldest_ready_age_ms,
        totals=stats.totals,
        paused=stats.paused,
    )


def scheduling_stats_to_proto(stats: SchedulingStats) -> pb.SchedulingStats:
    return pb.SchedulingStats(
        bands=[pb.BandShare(**band._asdict()) for band in stats.bands],
        keys=[pb.KeyShare(**key._asdict()) for key in stats.keys],
    )


def scheduling_stats_from_proto(message: pb.SchedulingStats) -> SchedulingStats:
    return SchedulingStats(
        bands=[BandShare(**message_to_dict(band)) for band in message.bands],
        keys=[KeyShare(**{"key": None} | message_to_dict(key)) for key in message.keys],
    )


def stats_from_proto(message: pb.QueueStats) -> QueueStats:
    return QueueStats(
        ready=message.ready,
        delayed=message.delayed,
        leased=message.leased,
        succeeded=message.succeeded,
        dead=message.dead,
        oldest_ready_age_ms=(
            message.oldest_ready_age_ms if message.HasField("oldest_ready_age_ms") else None
        ),
        totals=dict(message.totals),
        paused=message.paused,
    )


# -- messages ----------------------------------------------------------------------


def headers_to_proto(headers: Headers | None) -> pb.Headers | None:
    if headers is None:
        return None
    return pb.Headers(
        content_type=headers.content_type,
        correlation_id=headers.correlation_id,
        type=headers.type,
        source=headers.source,
        user=headers.user,
    )


def headers_from_proto(message: pb.Headers) -> Headers:
    return Headers(
        content_type=message.content_type if message.HasField("content_type") else None,
        correlation_id=message.correlation_id if message.HasField("correlation_id") else None,
        type=message.type if message.HasField("type") else None,
        source=message.source if message.HasField("source") else None,
        user=dict(message.user),
    )


def _optional(message: ProtoMessage, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


def backoff_to_proto(policy: BackoffPolicy | None) -> pb.BackoffPolicy | None:
    return None if policy is None else pb.BackoffPolicy(**dataclasses.asdict(policy))


def backoff_from_proto(holder: pb.MessageSpec | pb.Message) -> BackoffPolicy | None:
    """The ``backoff`` of a spec or message; protobuf's own checks left to the engine."""
    if not holder.HasField("backoff"):
        return None
    return BackoffPolicy(**message_to_dict(holder.backoff))


def spec_to_proto(spec: MessageSpec) -> pb.MessageSpec:
    return pb.MessageSpec(
        payload=spec.payload,
        priority=spec.priority,
        headers=headers_to_proto(spec.headers),
        delay_ms=spec.delay_ms,
        run_at=spec.run_at,
        ttl_ms=spec.ttl_ms,
        expires_at=spec.expires_at,
        max_deliveries=spec.max_deliveries,
        dedup_key=spec.dedup_key,
        fairness_key=spec.fairness_key,
        cost=None if spec.cost == 1 else spec.cost,
        backoff=backoff_to_proto(spec.backoff),
    )


def spec_from_proto(message: pb.MessageSpec) -> MessageSpec:
    return MessageSpec(
        payload=message.payload,
        priority=message.priority,
        headers=headers_from_proto(message.headers) if message.HasField("headers") else None,
        delay_ms=_optional(message, "delay_ms"),
        run_at=_optional(message, "run_at"),
        ttl_ms=_optional(message, "ttl_ms"),
        expires_at=_optional(message, "expires_at"),
        max_deliveries=_optional(message, "max_deliveries"),
        dedup_key=_optional(message, "dedup_key"),
        fairness_key=_optional(message, "fairness_key"),
        cost=message.cost if message.HasField("cost") else 1,
        backoff=backoff_from_proto(message),
    )


def schedule_to_proto(info: ScheduleInfo) -> pb.Schedule:
    spec = info.spec
    return pb.Schedule(
        namespace=info.namespace,
        name=info.name,
        queue=spec.queue,
        cron=spec.cron,
        timezone=spec.timezone,
        template=spec_to_proto(spec.template),
        paused=spec.paused,
        skip_if_running=spec.skip_if_running,
        next_fire_at=info.next_fire_at,
        last_fire_at=info.last_fire_at,
        last_message_id=info.last_message_id,
        last_error=info.last_error,
        fired=info.fired,
        created_at=info.created_at,
        updated_at=info.updated_at,
    )


def schedule_spec_from_proto(message: pb.Schedule) -> ScheduleSpec:
    return ScheduleSpec(
        queue=message.queue,
        cron=message.cron,
        template=spec_from_proto(message.template),
        timezone=message.timezone or "UTC",
        paused=message.paused,
        skip_if_running=message.skip_if_running,
    )


def schedule_from_proto(message: pb.Schedule) -> ScheduleInfo:
    return ScheduleInfo(
        namespace=message.namespace,
        name=message.name,
        spec=schedule_spec_from_proto(message),
        next_fire_at=message.next_fire_at,
        last_fire_at=_optional(message, "last_fire_at"),
        last_message_id=_optional(message, "last_message_id"),
        last_error=_optional(message, "last_error"),
        fired=message.fired,
        created_at=message.created_at,
        updated_at=message.updated_at,
    )


def message_to_proto(view: MessageView) -> pb.Message:
    return pb.Message(
        id=view.id,
        namespace=view.namespace,
        queue=view.queue,
        state=_STATES[view.state],
        payload=view.payload,
        priority=view.priority,
        headers=headers_to_proto(view.headers),
        fairness_key=view.fairness_key,
        cost=view.cost,
        created_at=view.created_at,
        updated_at=view.updated_at,
        visible_at=view.visible_at,
        expires_at=view.expires_at,
        deliveries=view.deliveries,
        max_deliveries=view.max_deliveries,
        dedup_key=view.dedup_key,
        lock_id=view.lock_id,
        lock_deadline=view.lock_deadline,
        last_error=view.last_error,
        failure_reason=failure_reason_to_proto(view.failure_reason),
        backoff=backoff_to_proto(view.backoff),
        result=view.result,
        progress=view.progress,
    )


def message_from_proto(message: pb.Message) -> MessageView:
    state = state_from_proto(message.state)
    return MessageView(
        id=message.id,
        namespace=message.namespace,
        queue=message.queue,
        state=MessageState.READY if state is None else state,
        payload=message.payload,
        priority=message.priority,
        headers=headers_from_proto(message.headers) if message.HasField("headers") else None,
        fairness_key=_optional(message, "fairness_key"),
        cost=message.cost,
        created_at=message.created_at,
        updated_at=message.updated_at,
        visible_at=message.visible_at,
        expires_at=_optional(message, "expires_at"),
        deliveries=message.deliveries,
        max_deliveries=_optional(message, "max_deliveries"),
        dedup_key=_optional(message, "dedup_key"),
        lock_id=_optional(message, "lock_id"),
        lock_deadline=_optional(message, "lock_deadline"),
        last_error=_optional(message, "last_error"),
        failure_reason=(
            failure_reason_from_proto(message.failure_reason) if message.failure_reason else None
        ),
        backoff=backoff_from_proto(message),
        result=_optional(message, "result"),
        progress=_optional(message, "progress"),
    )


def enqueue_result_to_proto(
    result: EnqueueResult, into: pb.EnqueueResult | None = None
) -> pb.EnqueueResult:
    """``result`` as protobuf, filled into ``into`` if given (an element just
    added to a repeated field: no copy)."""
    message = pb.EnqueueResult() if into is None else into
    message.message_id = result.message_id
    message.state = state_to_proto(result.state)
    message.duplicate = result.duplicate
    if result.visible_at is not None:
        message.visible_at = result.visible_at
    return message


def enqueue_results_to_proto(results: Sequence[EnqueueResult]) -> pb.EnqueueBatchResponse:
    """Built in place: half the cost of building each result and copying it in."""
    response = pb.EnqueueBatchResponse()
    add = response.results.add
    for result in results:
        enqueue_result_to_proto(result, add())
    return response


def enqueue_result_from_proto(message: pb.EnqueueResult) -> EnqueueResult:
    return EnqueueResult(
        message_id=message.message_id,
        state=state_from_proto(message.state),
        visible_at=_optional(message, "visible_at"),
        duplicate=message.duplicate,
    )


def filter_to_proto(where: MessageFilter) -> pb.MessageFilter:
    return pb.MessageFilter(
        fairness_key=where.fairness_key,
        min_priority=where.min_priority,
        max_priority=where.max_priority,
        states=[_STATES[s] for s in where.states],
        enqueued_before=where.enqueued_before,
        enqueued_after=where.enqueued_after,
        type=where.type,
    )


def filter_from_proto(message: pb.MessageFilter) -> MessageFilter:
    """Raises InvalidArgument naming ``where.<field>`` for a rule broken."""
    data = message_to_dict(message)
    if "states" in data:
        data["states"] = [str(_STATES_BACK.get(number, number)) for number in data["states"]]
    return MessageFilter.from_dict(data, "where")


class LockHolder(Protocol):
    """What names a lease: a leased ``MessageView``, or the CLI's ``LockKey``."""

    @property
    def namespace(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def lock_id(self) -> str | None: ...


def lock_ref(view: LockHolder) -> pb.LockRef:
    """The wire name of a lease."""
    return pb.LockRef(
        namespace=view.namespace, queue=view.queue, message_id=view.id, lock_id=view.lock_id or ""
    )


def ack_of_one(lock: pb.LockRef, result: bytes) -> pb.AckBatchRequest:
    """An ack with a result as an AckBatch of one (``Ack`` takes a LockRef,
    which has no room for one)."""
    batch = pb.AckBatchRequest(namespace=lock.namespace, queue=lock.queue)
    batch.items.add(message_id=lock.message_id, lock_id=lock.lock_id, result=result)
    return batch


def ack_item_error(error: KokaqError) -> KokaqError:
    """An AckBatch item's error as its ack's own: ``items[3].result`` is the
    ack's ``result``."""
    if not isinstance(error, InvalidArgument) or not error.field.startswith("items["):
        return error
    details = error.details()
    details["field"] = error.field.partition(".")[2] or "lock"
    return type(error)(**details)
