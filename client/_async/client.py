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
from kokaq.client.transport import AsyncGrpcTransport, RetryPolicy
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

__all__ = ["AsyncClient", "AsyncLeased", "AsyncQueue", "AsyncTransport"]

_T = TypeVar("_T")


class AsyncTransport(Protocol):
    async def call(self, name: str, request: Any) -> Any: ...

    async def close(self) -> None: ...


class AsyncClient:
    def __init__(
        self,
        addresses: str | Sequence[str] | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        consistency: str = "leader",
        transport: AsyncTransport | None = None,
    ) -> None:
        """``consistency="strong"`` sends every read through the Raft log, so it
        sees every write committed before it even across a leader change; the
        default reads the leader's engine."""
        if transport is None:
            transport = AsyncGrpcTransport(
                addresses or "127.0.0.1:9000",
                api_key=api_key,
                timeout=timeout,
                retry=retry,
                consistency=consistency,
            )
        self._transport = transport

    async def run(self, call: Call[_T]) -> _T:
        return call.parse(await self._transport.call(call.name, call.request))

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def cluster_status(self, *, with_digest: bool = False) -> ClusterStatus:
        """The Raft status of the node this client talks to (not necessarily the
        leader); ``with_digest`` adds a hash of its engine state (costly)."""
        return await self.run(calls.cluster_status(with_digest))

    # -- namespaces ---------------------------------------------------------------------

    async def add_member(self, address: str) -> ClusterStatus:
        """Add a member (its Raft address) to the group; on the leader, one
        change at a time. Start the new node first, with --peers naming the group."""
        return await self.run(calls.add_member(address))

    async def remove_member(self, address: str) -> ClusterStatus:
        """Remove a member (its Raft address) from the group; then stop it."""
        return await self.run(calls.remove_member(address))

    async def transfer_leadership(self, to: str | None = None) -> ClusterStatus:
        """Hand leadership to a caught-up follower (the most caught-up one by default)."""
        return await self.run(calls.transfer_leadership(to))

    async def create_namespace(
        self, name: str, config: NamespaceConfig | None = None
    ) -> NamespaceInfo:
        return await self.run(calls.create_namespace(name, config))

    async def get_namespace(self, name: str) -> NamespaceInfo:
        return await self.run(calls.get_namespace(name))

    async def list_namespaces(self) -> list[NamespaceInfo]:
        return await self.run(calls.list_namespaces())

    async def update_namespace(self, name: str, config: NamespaceConfig) -> NamespaceInfo:
        return await self.run(calls.update_namespace(name, config))

    async def delete_namespace(self, name: str, *, force: bool = False) -> None:
        await self.run(calls.delete_namespace(name, force))

    async def purge_namespace(self, name: str) -> int:
        return await self.run(calls.purge_namespace(name))

    # -- queues ---------------------------------------------------------------------------

    async def create_queue(
        self, namespace: str, name: str, config: QueueConfig | None = None
    ) -> QueueInfo:
        return await self.run(calls.create_queue(namespace, name, config))

    async def get_queue(self, namespace: str, name: str) -> QueueInfo:
        return await self.run(calls.get_queue(namespace, name))

    async def list_queues(self, namespace: str) -> list[QueueInfo]:
        return await self.run(calls.list_queues(namespace))

    async def update_queue(self, namespace: str, name: str, config: QueueConfig) -> QueueInfo:
        return await self.run(calls.update_queue(namespace, name, config))

    async def delete_queue(self, namespace: str, name: str, *, force: bool = False) -> None:
        await self.run(calls.delete_queue(namespace, name, force))

    # -- schedules ------------------------------------------------------------------------

    async def put_schedule(self, namespace: str, name: str, spec: ScheduleSpec) -> ScheduleInfo:
        """Create the schedule, or replace what it does (its history stays):
        ``spec.template`` is enqueued into ``spec.queue`` at each time of
        ``spec.cron`` (5 fields, or 6 with seconds first) in ``spec.timezone``.
        Admin; needs a cluster at log format 4."""
        return await self.run(calls.put_schedule(namespace, name, spec))

    async def get_schedule(self, namespace: str, name: str) -> ScheduleInfo:
        return await self.run(calls.get_schedule(namespace, name))

    async def list_schedules(self, namespace: str) -> list[ScheduleInfo]:
        return await self.run(calls.list_schedules(namespace))

    async def pause_schedule(self, namespace: str, name: str) -> ScheduleInfo:
        """Fire nothing until ``resume_schedule``."""
        return await self.run(calls.pause_schedule(namespace, name))

    async def resume_schedule(self, namespace: str, name: str) -> ScheduleInfo:
        """Fire again from the next time to come (times passed while paused are skipped)."""
        return await self.run(calls.resume_schedule(namespace, name))

    async def delete_schedule(self, namespace: str, name: str) -> None:
        await self.run(calls.delete_schedule(namespace, name))

    async def trigger_schedule(self, namespace: str, name: str) -> EnqueueResult:
        """Enqueue the schedule's job now, besides its fires (paused or not)."""
        return await self.run(calls.trigger_schedule(namespace, name))

    async def find_message(self, namespace: str, message_id: str) -> MessageView:
        """A message of the namespace by id, whichever queue holds it."""
        return await self.run(calls.find_message(namespace, message_id))

    def queue(self, namespace: str, name: str) -> AsyncQueue:
        return AsyncQueue(self, namespace, name)

    async def dequeue(
        self,
        namespace: str,
        queues: str | Mapping[str, int] | Sequence[tuple[str, int]],
        *,
        max_count: int = 1,
        visibility_timeout_ms: int | None = None,
    ) -> list[AsyncLeased]:
        """Lease from one queue, or from several chosen by weight (``{"high": 5, "low": 1}``)."""
        views = await self.run(
            calls.dequeue(namespace, queue_weights(queues), max_count, visibility_timeout_ms)
        )
        return [AsyncLeased(self, view) for view in views]


class AsyncQueue:
    """One queue of a client: what producers and consumers call."""

    def __init__(self, client: AsyncClient, namespace: str, name: str) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name

    async def enqueue(
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
        return await self.client.run(calls.enqueue(self.namespace, self.name, spec))

    async def enqueue_many(self, items: Sequence[MessageSpec | bytes | str]) -> list[EnqueueResult]:
        specs = [i if isinstance(i, MessageSpec) else make_spec(i, 0, None) for i in items]
        return await self.client.run(calls.enqueue_batch(self.namespace, self.name, specs))

    async def dequeue(
        self, max_count: int = 1, *, visibility_timeout_ms: int | None = None
    ) -> list[AsyncLeased]:
        return await self.client.dequeue(
            self.namespace,
            self.name,
            max_count=max_count,
            visibility_timeout_ms=visibility_timeout_ms,
        )

    async def peek(self, count: int = 1) -> list[MessageView]:
        return await self.client.run(calls.peek(self.namespace, self.name, count))

    async def ack_many(
        self, leased: Sequence[AsyncLeased | MessageView]
    ) -> list[KokaqError | None]:
        views = [m.message if isinstance(m, AsyncLeased) else m for m in leased]
        pairs = [(v.id, v.lock_id or "") for v in views]
        return await self.client.run(calls.ack_batch(self.namespace, self.name, pairs))

    async def get(self, message_id: str) -> MessageView:
        return await self.client.run(calls.get_message(self.namespace, self.name, message_id))

    async def scheduling_stats(self, key_limit: int = 100) -> SchedulingStats:
        """What each band and the most served fairness keys got, against their weights."""
        return await self.client.run(calls.scheduling_stats(self.namespace, self.name, key_limit))

    async def list_messages(
        self, states: Sequence[MessageState | str] = (), limit: int = 100
    ) -> list[MessageView]:
        """The newest messages first, in the states given (all when none)."""
        return await self.client.run(calls.list_messages(self.namespace, self.name, states, limit))

    async def cancel(self, message_id: str) -> MessageView:
        """Remove a ready, delayed or dead message; returns it as it was."""
        return await self.client.run(calls.cancel_message(self.namespace, self.name, message_id))

    async def stats(self) -> QueueStats:
        return await self.client.run(calls.stats(self.namespace, self.name))

    async def info(self) -> QueueInfo:
        return await self.client.get_queue(self.namespace, self.name)

    async def purge(self) -> int:
        return await self.client.run(calls.purge_queue(self.namespace, self.name))

    async def pause(self) -> QueueInfo:
        """Dispatch nothing from this queue until ``resume``: consumers and
        workers get nothing from it; enqueues, peeks, settles and timers go on.
        Admin; needs a cluster at log format 3 (FailedPrecondition before)."""
        return await self.client.run(calls.pause_queue(self.namespace, self.name))

    async def resume(self) -> QueueInfo:
        """Dispatch from this queue again."""
        return await self.client.run(calls.resume_queue(self.namespace, self.name))

    async def reprioritize(
        self, priority: int, *, message_id: str | None = None, where: MessageFilter | None = None
    ) -> int:
        return await self.client.run(
            calls.reprioritize(self.namespace, self.name, priority, message_id, where)
        )

    async def list_dead(self, limit: int = 100, after: int | None = None) -> DeadPage:
        return await self.client.run(calls.list_dead(self.namespace, self.name, limit, after))

    async def redrive(self, message_ids: Sequence[str] | None = None) -> int:
        return await self.client.run(calls.redrive(self.namespace, self.name, message_ids))

    async def purge_dead(self, message_ids: Sequence[str] | None = None) -> int:
        return await self.client.run(calls.purge_dead(self.namespace, self.name, message_ids))


class AsyncLeased:
    """A message under a lease: settle it with ack, nack or release."""

    def __init__(self, client: AsyncClient, message: MessageView) -> None:
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

    async def ack(self, result: bytes | None = None) -> None:
        """Done: kept as succeeded for the queue's retention, with ``result``
        (at most the queue's max payload) if given."""
        await self.client.run(calls.ack(self.message, result))

    async def nack(
        self,
        error: str | None = None,
        *,
        reason: FailureReason = FailureReason.PROCESSING_ERROR,
        delay_ms: int | None = None,
        dead_letter: bool = False,
    ) -> NackResult:
        return await self.client.run(calls.nack(self.message, reason, error, delay_ms, dead_letter))

    async def extend(self, add_ms: int) -> int:
        """Lengthen the lease by ``add_ms`` from the deadline this lease last
        had: a retry after a lost answer extends once. The new deadline."""
        call = calls.extend(self.message, add_ms, self.message.lock_deadline)
        deadline = await self.client.run(call)
        self.message = self.message._replace(lock_deadline=deadline)
        return deadline

    async def refresh(self) -> int:
        deadline = await self.client.run(calls.refresh(self.message))
        self.message = self.message._replace(lock_deadline=deadline)
        return deadline

    async def report_progress(self, value: Any) -> int:
        """Say how far this message's work is (any JSON value, at most 4,096
        bytes of it): shown with the message until it is leased again. It
        restarts the visibility timeout as ``refresh`` does."""
        deadline = await self.client.run(calls.report_progress(self.message, progress_text(value)))
        self.message = self.message._replace(lock_deadline=deadline)
        return deadline

    async def set_visibility_timeout(self, timeout_ms: int) -> int:
        deadline = await self.client.run(calls.set_visibility_timeout(self.message, timeout_ms))
        self.message = self.message._replace(lock_deadline=deadline)
        return deadline

    async def release(self, *, delay_ms: int | None = None, visible_at: int | None = None) -> int:
        return await self.client.run(calls.release(self.message, delay_ms, visible_at))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, priority={self.message.priority})"
