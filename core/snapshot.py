"""Engine snapshots: the whole state as msgpack (never pickle) and back.

Only the facts are stored (messages with every field, the order of the
succeeded and dedup queues, counters, scheduler state); indexes are rebuilt
on load. Index keys are unique, so a rebuilt index yields exactly the same
order as the original.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kokaq.core.config import BackoffPolicy, NamespaceConfig, QueueConfig
from kokaq.core.errors import InvalidArgument
from kokaq.core.indexes import deadline_key
from kokaq.core.message import FailureReason, Headers, Message, MessageSpec, MessageState
from kokaq.core.mixes import QueueMixes
from kokaq.core.namespace import Namespace
from kokaq.core.queue import Queue, SeqCounter
from kokaq.core.results import Totals
from kokaq.core.schedules import Schedule, ScheduleSpec

__all__ = ["FORMAT", "dump", "load"]

FORMAT = 2


def dump(namespaces: dict[str, Namespace], now: int, seq: int, mixes: QueueMixes) -> bytes:
    # msgpack imports datetime, which imports time: load it only when used, so
    # importing kokaq.core pulls in no clock module at all.
    import msgpack  # noqa: PLC0415

    body = {
        "format": FORMAT,
        "now": now,
        "seq": seq,
        "mixes": mixes.export_state(),
        "namespaces": [
            [
                ns.name,
                ns.config.to_dict(),
                ns.created_at,
                ns.updated_at,
                [_dump_queue(q) for q in ns.queues.values()],
                # Only when there are some: builds before schedules refuse a
                # longer record, and none is made before every member has them.
                *([[_dump_schedule(s) for s in ns.schedules.values()]] if ns.schedules else []),
            ]
            for ns in namespaces.values()
        ],
    }
    return msgpack.packb(body, use_bin_type=True)


def load(data: bytes) -> tuple[dict[str, Namespace], int, SeqCounter, QueueMixes]:
    import msgpack  # noqa: PLC0415

    try:
        body = msgpack.unpackb(data, raw=False)
    except Exception as error:  # msgpack raises several unrelated types
        raise InvalidArgument("snapshot", f"is not a kokaq snapshot ({error})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise InvalidArgument("snapshot", f"is not a kokaq snapshot of format {FORMAT}")
    namespaces: dict[str, Namespace] = {}
    seqs = SeqCounter(body["seq"])
    for record in body["namespaces"]:
        name, config, created_at, updated_at, queues, schedules = [*record, []][:6]
        namespace = Namespace(name, NamespaceConfig.from_dict(config), created_at)
        namespace.updated_at = updated_at
        for queue_data in queues:
            queue = _load_queue(name, queue_data, seqs)
            namespace.queues[queue.name] = queue
        for schedule_data in schedules:
            schedule = _load_schedule(schedule_data)
            namespace.schedules[schedule.name] = schedule
        namespaces[name] = namespace
    return namespaces, body["now"], seqs, QueueMixes.import_state(body["mixes"])


def _dump_schedule(s: Schedule) -> list[Any]:
    spec, template = s.spec, s.spec.template
    return [
        s.name,
        spec.queue,
        spec.cron,
        spec.timezone,
        spec.paused,
        spec.skip_if_running,
        [
            template.payload,
            template.priority,
            None if template.headers is None else template.headers.to_list(),
            template.ttl_ms,
            template.max_deliveries,
            template.fairness_key,
            template.cost,
            None if template.backoff is None else list(dataclasses.astuple(template.backoff)),
        ],
        s.next_fire_at,
        s.last_fire_at,
        s.last_message_id,
        s.last_error,
        s.fired,
        s.created_at,
        s.updated_at,
        s.resumed_at,
    ]


def _load_schedule(data: list[Any]) -> Schedule:
    name, queue, cron, timezone, paused, skip_if_running, template, next_fire_at, *history = data
    payload, priority, headers, ttl_ms, max_deliveries, fairness_key, cost, backoff = template
    spec = ScheduleSpec(
        queue,
        cron,
        MessageSpec(
            payload=payload,
            priority=priority,
            headers=None if headers is None else Headers.from_list(headers),
            ttl_ms=ttl_ms,
            max_deliveries=max_deliveries,
            fairness_key=fairness_key,
            cost=cost,
            backoff=None if backoff is None else BackoffPolicy(*backoff),
        ),
        timezone,
        paused,
        skip_if_running,
    )
    schedule = Schedule(name, spec, next_fire_at, 0)
    (
        schedule.last_fire_at,
        schedule.last_message_id,
        schedule.last_error,
        schedule.fired,
        schedule.created_at,
        schedule.updated_at,
        schedule.resumed_at,
    ) = history
    return schedule


def _dump_queue(q: Queue) -> list[Any]:
    return [
        q.name,
        q.config.to_dict(),
        q.created_at,
        q.updated_at,
        q.totals.as_dict(),
        q.scheduler.export_state(),
        [_dump_message(m) for m in q.messages.values()],
        [m.id for m in q.succeeded],
        [[key, first_id, at] for key, (first_id, at) in q.dedup.items()],
        [[at, key] for at, key in q.dedup_order],
        # Only when paused: builds before pausing refuse a longer record, and
        # no queue is paused before every member applies log format 3.
        *([q.paused_at] if q.paused_at is not None else []),
    ]


def _load_queue(namespace: str, data: list[Any], seqs: SeqCounter) -> Queue:
    (
        name,
        config,
        created_at,
        updated_at,
        totals,
        scheduler_state,
        messages,
        succeeded,
        dedup,
        order,
        paused_at,
    ) = [*data, None][:11]  # a running queue: 10 (and the builds before pausing)
    queue = Queue(namespace, name, QueueConfig.from_dict(config), created_at, seqs)
    queue.updated_at = updated_at
    queue.paused_at = paused_at
    queue.totals = Totals.from_dict(totals)
    for fields in messages:
        message = _load_message(fields)
        queue.messages[message.id] = message
        state = message.state
        if state is MessageState.READY:
            queue.scheduler.add(message)
            queue.oldest_ready.add(message)
        elif state is MessageState.DELAYED:
            queue.delayed.push(deadline_key(message.visible_at, message.seq), message)
        elif state is MessageState.LEASED:
            queue.leased.push(deadline_key(lock_deadline_of(message), message.seq), message)
        elif state is MessageState.DEAD:
            queue.dead[deadline_key(message.updated_at, message.seq)] = message
        if message.expires_at is not None and state in (
            MessageState.READY,
            MessageState.DELAYED,
            MessageState.LEASED,
        ):
            queue.ttl.push(deadline_key(message.expires_at, message.seq), message)
    queue.succeeded.extend(queue.messages[message_id] for message_id in succeeded)
    queue.dedup = {key: (first_id, at) for key, first_id, at in dedup}
    queue.dedup_order.extend((at, key) for at, key in order)
    queue.recount_keys()
    queue.scheduler.import_state(scheduler_state)
    return queue


def lock_deadline_of(message: Message) -> int:
    if message.lock_deadline is None:
        raise InvalidArgument("snapshot", f"leased message {message.id!r} has no lock deadline")
    return message.lock_deadline


def _dump_message(m: Message) -> list[Any]:
    return [
        m.id,
        m.payload,
        m.priority,
        m.seq,
        None if m.headers is None else m.headers.to_list(),
        m.fairness_key,
        m.cost,
        m.created_at,
        m.updated_at,
        m.visible_at,
        m.expires_at,
        m.deliveries,
        m.max_deliveries,
        m.dedup_key,
        m.state.value,
        m.lock_id,
        m.lock_deadline,
        m.lease_ms,
        m.last_error,
        None if m.failure_reason is None else m.failure_reason.value,
        None if m.backoff is None else list(dataclasses.astuple(m.backoff)),
        None if m.returned is None else list(m.returned),
        m.result,
        m.progress,
    ]


def _load_message(fields: list[Any]) -> Message:
    (
        message_id,
        payload,
        priority,
        seq,
        headers,
        fairness_key,
        cost,
        created_at,
        updated_at,
        visible_at,
        expires_at,
        deliveries,
        max_deliveries,
        dedup_key,
        state,
        lock_id,
        lock_deadline,
        lease_ms,
        last_error,
        failure_reason,
        backoff,
        returned,
        result,
        progress,
    ) = [*fields, None, None, None, None][:24]  # older: 20 (no backoff) … 23 (no progress)
    message = Message(
        message_id,
        payload,
        priority,
        seq,
        created_at,
        visible_at,
        expires_at,
        None if headers is None else Headers.from_list(headers),
        fairness_key,
        cost,
        max_deliveries,
        dedup_key,
        None if backoff is None else BackoffPolicy(*backoff),
    )
    message.updated_at = updated_at
    message.deliveries = deliveries
    message.state = MessageState(state)
    message.lock_id = lock_id
    message.lock_deadline = lock_deadline
    message.lease_ms = lease_ms
    message.last_error = last_error
    message.failure_reason = None if failure_reason is None else FailureReason(failure_reason)
    message.returned = None if returned is None else (returned[0], returned[1])
    message.result = result
    message.progress = progress
    return message
