# Generated from client/_async by scripts/gen-sync-client: do not edit.
"""The SDK's client, queue and leased-message classes, written once for asyncio.

    async with AsyncClient("127.0.0.1:9000") as client:
        orders = client.queue("default", "orders")
        await orders.enqueue(b'{"id": 1}', priority=5)
        for job in await orders.dequeue(max_count=10):
            handle(job.payload)
            await job.ack()

The blocking ``Client``, ``Queue`` and ``Leased`` (``client/_sync/client.py``)
are generated from this file by unasync (``scripts/gen-sync-client``), which
drops ``async``/``await`` and the ``Async`` prefixes: edit here, then regenerate.
Every error is a ``KokaqError`` subclass (``kokaq.core.errors``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from kokaq.client import calls
from kokaq.client.calls import Call, ClusterStatus, make_spec, queue_weights
from kokaq.client.transport import GrpcTransport, RetryPolicy
from kokaq.core import (
    DeadPage,
    EnqueueResult,
    FailureReason,
    Headers,
    KokaqError,
    MessageFilter,
    MessageSpec,
    MessageState,
    MessageView,
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
from kokaq.protocol.jobs import progress_text

__all__ = ["Client", "Leased", "Queue", "Transport"]

_T = TypeVar("_T")


class Transport(Protocol):
    def call(self, name: str, request: Any) -> Any: ...

    def close(self) -> None: ...


class Client:
    def __init__(
        self,
        addresses: str | Sequence[str] | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        consistency: str = "leader",
        transport: Transport | None = None,
    ) -> None:
        """``consistency="strong"`` sends every read through the Raft log, so it
        sees every write committed before it even across a leader change; the
        default reads the leader's engine."""
        if transport is None:
            transport = GrpcTransport(
                addresses or "127.0.0.1:9000",
                api_key=api_key,
                timeout=timeout,
                retry=retry,
                consistency=consistency,
            )
        self._transport = transport

    def run(self, call: Call[_T]) -> _T:
        return call.parse(self._transport.call(call.name, call.request))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def cluster_status(self, *, with_digest: bool = False) -> ClusterStatus:
        """The Raft status of the node this client talks to (not necessarily the
        leader); ``with_digest`` adds a hash of its engine state (costly)."""
        return self.run(calls.cluster_status(with_digest))

    # -- namespaces ---------------------------------------------------------------------

    def add_member(self, address: str) -> ClusterStatus:
        """Add a member (its Raft address) to the group; on the leader, one
        change at a time. Start the new node first, with --peers naming the group."""
        return self.run(calls.add_member(address))

    def remove_member(self, address: str) -> ClusterStatus:
        """Remove a member (its Raft address) from the group; then stop it."""
        return self.run(calls.remove_member(address))

    def transfer_leadership(self, to: str | None = None) -> ClusterStatus:
        """Hand leadership to a caught-up follower (the most caught-up one by default)."""
        return self.run(calls.transfer_leadership(to))

    def create_namespace(self, name: str, config: NamespaceConfig | None = None) -> NamespaceInfo:
        return self.run(calls.create_namespace(name, config))

    def get_namespace(self, name: str) -> NamespaceInfo:
        return self.run(calls.get_namespace(name))

    def list_namespaces(self) -> list[NamespaceInfo]:
        return self.run(calls.list_namespaces())

    def update_namespace(self, name: str, config: NamespaceConfig) -> NamespaceInfo:
        return self.run(calls.update_namespace(name, config))

    def delete_namespace(self, name: str, *, force: bool = False) -> None:
        self.run(calls.delete_namespace(name, force))

    def purge_namespace(self, name: str) -> int:
        return self.run(calls.purge_namespace(name))

    # -- queues ---------------------------------------------------------------------------

    def create_queue(
        self, namespace: str, name: str, config: QueueConfig | None = None
    ) -> QueueInfo:
        return self.run(calls.create_queue(namespace, name, config))

    def get_queue(self, namespace: str, name: str) -> QueueInfo:
        return self.run(calls.get_queue(namespace, name))

    def list_queues(self, namespace: str) -> list[QueueInfo]:
        return self.run(calls.list_queues(namespace))

    def update_queue(self, namespace: str, name: str, config: QueueConfig) -> QueueInfo:
        return self.run(calls.update_queue(namespace, name, config))

    def delete_queue(self, namespace: str, name: str, *, force: bool = False) -> None:
        self.run(calls.delete_queue(namespace, name, force))

    # -- schedules ------------------------------------------------------------------------

    def put_schedule(self, namespace: str, name: str, spec: ScheduleSpec) -> ScheduleInfo:
        """Create the schedule, or replace what it does (its history stays):
        ``spec.template`` is enqueued into ``spec.queue`` at each time of
        ``spec.cron`` (5 fields, or 6 with seconds first) in ``spec.timezone``.
        Admin; needs a cluster at log format 4."""
        return self.run(calls.put_schedule(namespace, name, spec))

    def get_schedule(self, namespace: str, name: str) -> ScheduleInfo:
        return self.run(calls.get_schedule(namespace, name))

    def list_schedules(self, namespace: str) -> list[ScheduleInfo]:
        return self.run(calls.list_schedules(namespace))

    def pause_schedule(self, namespace: str, name: str) -> ScheduleInfo:
        """Fire nothing until ``resume_schedule``."""
        return self.run(calls.pause_schedule(namespace, name))

    def resume_schedule(self, namespace: str, name: str) -> ScheduleInfo:
        """Fire again from the next time to come (times passed while paused are skipped)."""
        return self.run(calls.resume_schedule(namespace, name))

    def delete_schedule(self, namespace: str, name: str) -> None:
        self.run(calls.delete_schedule(namespace, name))

    def trigger_schedule(self, namespace: str, name: str) -> EnqueueResult:
        """Enqueue the schedule's job now, besides its fires (paused or not)."""
        return self.run(calls.trigger_schedule(namespace, name))

    def find_message(self, namespace: str, message_id: str) -> MessageView:
        """A message of the namespace by id, whichever queue holds it."""
        return self.run(calls.find_message(namespace, message_id))

    def queue(self, namespace: str, name: str) -> Queue:
        return Queue(self, namespace, name)

    def dequeue(
        self,
        namespace: str,
        queues: str | Mapping[str, int] | Sequence[tuple[str, int]],
        *,
        max_count: int = 1,
        visibility_timeout_ms: int | None = None,
    ) -> list[Leased]:
        """Lease from one queue, or from several chosen by weight (``{"high": 5, "low": 1}``)."""
        views = self.run(
            calls.dequeue(namespace, queue_weights(queues), max_count, visibility_timeout_ms)
        )
        return [Leased(self, view) for view in views]


class Queue:
    """One queue of a client: what producers and consumers call."""

    def __init__(self, client: Client, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name

    def enqueue(
        self,
        payload: bytes | str,
        *,
        priority: int = 0,
        headers: Headers | Mapping[str, str] | None = None,
        **options: Any,
    ) -> EnqueueResult:
        """Options: delay_ms, run_at, ttl_ms, expires_at, max_deliveries,
        dedup_key (one is made up if not given), fairness_key, cost, backoff
        (a BackoffPolicy: this message's retry delays)."""
        spec = make_spec(payload, priority, headers, **options)
        return self.client.run(calls.enqueue(self.namespace, self.name, spec))

    def enqueue_many(self, items: Sequence[MessageSpec | bytes | str]) -> list[EnqueueResult]:
        specs = [i if isinstance(i, MessageSpec) else make_spec(i, 0, None) for i in items]
        return self.client.run(calls.enqueue_batch(self.namespace, self.name, specs))

    def dequeue(
        self, max_count: int = 1, *, visibility_timeout_ms: int | None = None
    ) -> list[Leased]:
        return self.client.dequeue(
            self.namespace,
            self.name,
            max_count=max_count,
            visibility_timeout_ms=visibility_timeout_ms,
        )

    def peek(self, count: int = 1) -> list[MessageView]:
        return self.client.run(calls.peek(self.namespace, self.name, count))

    def ack_many(self, leased: Sequence[Leased | MessageView]) -> list[KokaqError | None]:
        views = [m.message if isinstance(m, Leased) else m for m in leased]
        pairs = [(v.id, v.lock_id or "") for v in views]
        return self.client.run(calls.ack_batch(self.namespace, self.name, pairs))

    def get(self, message_id: str) -> MessageView:
        return self.client.run(calls.get_message(self.namespace, self.name, message_id))

    def scheduling_stats(self, key_limit: int = 100) -> SchedulingStats:
        """What each band and the most served fairness keys got, against their weights."""
        return self.client.run(calls.scheduling_stats(self.namespace, self.name, key_limit))

    def list_messages(
        self, states: Sequence[MessageState | str] = (), limit: int = 100
    ) -> list[MessageView]:
        """The newest messages first, in the states given (all when none)."""
        return self.client.run(calls.list_messages(self.namespace, self.name, states, limit))

    def cancel(self, message_id: str) -> MessageView:
        """Remove a ready, delayed or dead message; returns it as it was."""
        return self.client.run(calls.cancel_message(self.namespace, self.name, message_id))

    def stats(self) -> QueueStats:
        return self.client.run(calls.stats(self.namespace, self.name))

    def info(self) -> QueueInfo:
        return self.client.get_queue(self.namespace, self.name)

    def purge(self) -> int:
        return self.client.run(calls.purge_queue(self.namespace, self.name))

    def pause(self) -> QueueInfo:
        """Dispatch nothing from this queue until ``resume``: consumers and
        workers get nothing from it; enqueues, peeks, settles and timers go on.
        Admin; needs a cluster at log format 3 (FailedPrecondition before)."""
        return self.client.run(calls.pause_queue(self.namespace, self.name))

    def resume(self) -> QueueInfo:
        """Dispatch from this queue again."""
        return self.client.run(calls.resume_queue(self.namespace, self.name))

    def reprioritize(
        self, priority: int, *, message_id: str | None = None, where: MessageFilter | None = None
    ) -> int:
        return self.client.run(
            calls.reprioritize(self.namespace, self.name, priority, message_id, where)
        )

    def list_dead(self, limit: int = 100, after: int | None = None) -> DeadPage:
        return self.client.run(calls.list_dead(self.namespace, self.name, limit, after))

    def redrive(self, message_ids: Sequence[str] | None = None) -> int:
        return self.client.run(calls.redrive(self.namespace, self.name, message_ids))

    def purge_dead(self, message_ids: Sequence[str] | None = None) -> int:
        return self.client.run(calls.purge_dead(self.namespace, self.name, message_ids))


class Leased:
    """A message under a lease: settle it with ack, nack or release."""

    def __init__(self, client: Client, message: MessageView) -> None:
        self.client = client
        self.message = message

    @property
    def id(self) -> str:
        return self.message.id

    @property
    def payload(self) -> bytes:
        return self.message.payload

    @property
    def lock_deadline(self) -> int | None:
        return self.message.lock_deadline

    def ack(self, result: bytes | None = None) -> None:
        """Done: kept as succeeded for the queue's retention, with ``result``
        (at most the queue's max payload) if given."""
        self.client.run(calls.ack(self.message, result))

    def nack(
        self,
        error: str | None = None,
        *,
        reason: FailureReason = FailureReason.PROCESSING_ERROR,
        delay_ms: int | None = None,
        dead_letter: bool = False,
    ) -> NackResult:
        return self.client.run(calls.nack(self.message, reason, error, delay_ms, dead_letter))

    def extend(self, add_ms: int) -> int:
        """Lengthen the lease by ``add_ms`` from the deadline this lease last
        had: a retry after a lost answer extends once. The new deadline."""
        call = calls.extend(self.message, add_ms, self.message.lock_deadline)
        deadline = self.client.run(call)
        self.message = self.message._replace(lock_deadline=deadline)
        return deadline

    def refresh(self) -> int:
        deadline = self.client.run(calls.refresh(self.message))
        self.message = self.message._replace(lock_deadline=deadline)
        return deadline

    def report_progress(self, value: Any) -> int:
        """Say how far this message's work is (any JSON value, at most 4,096
        bytes of it): shown with the message until it is leased again. It
        restarts the visibility timeout as ``refresh`` does."""
        deadline = self.client.run(calls.report_progress(self.message, progress_text(value)))
        self.message = self.message._replace(lock_deadline=deadline)
        return deadline

    def set_visibility_timeout(self, timeout_ms: int) -> int:
        deadline = self.client.run(calls.set_visibility_timeout(self.message, timeout_ms))
        self.message = self.message._replace(lock_deadline=deadline)
        return deadline

    def release(self, *, delay_ms: int | None = None, visible_at: int | None = None) -> int:
        return self.client.run(calls.release(self.message, delay_ms, visible_at))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, priority={self.message.priority})"
