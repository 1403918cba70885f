"""The engine: namespaces of queues of messages, and every operation on them.

Deterministic by construction: each mutating operation takes ``now``
(integer milliseconds) and any id it creates; nothing reads a clock or a
random source. The engine keeps its own clock, the largest ``now`` it has
been given, so time never runs backwards inside it even if the callers'
clocks disagree a little (a new Raft leader, say).

Every operation checks its input before it changes anything and raises a
``KokaqError`` subclass on failure.
"""

from __future__ import annotations

from collections.abc import Sequence

from kokaq.core import snapshot as _snapshot
from kokaq.core.admission import MAX_DELAY_MS, admit
from kokaq.core.browse import MessageOps
from kokaq.core.config import SECOND, BackoffPolicy, NamespaceConfig, QueueConfig
from kokaq.core.dead_letters import DeadLetterOps
from kokaq.core.engine_core import (
    MAX_BATCH,
    MAX_LEASE_MS,
    MAX_TIME,
    EngineCore,
    is_pair,
    is_triple,
)
from kokaq.core.errors import (
    ConfigError,
    InvalidArgument,
    KokaqError,
    MessageExists,
    NamespaceExists,
    NotEmpty,
    QueueExists,
    ResourceExhausted,
)
from kokaq.core.message import (
    MAX_PROGRESS,
    FailureReason,
    Headers,
    Message,
    MessageSpec,
    MessageState,
    MessageView,
)
from kokaq.core.namespace import Namespace
from kokaq.core.queue import Queue, Transitions
from kokaq.core.results import (
    EnqueueResult,
    NackOutcome,
    NackResult,
    NamespaceInfo,
    QueueInfo,
    QueueStats,
    TickReport,
)
from kokaq.core.schedules import ScheduleOps
from kokaq.core.scheduling_ops import MAX_MIX, SchedulingOps
from kokaq.core.validation import check_bool, check_id, check_int, check_name, check_text

__all__ = ["MAX_BATCH", "MAX_MIX", "Engine"]

_MAX_ERROR_BYTES = 4096


class Engine(ScheduleOps, SchedulingOps, DeadLetterOps, MessageOps, EngineCore):
    """A kokaq engine. Not thread-safe: one caller (the Raft apply loop) at a time."""

    # -- namespaces --------------------------------------------------------------

    def create_namespace(
        self, name: str, config: NamespaceConfig | None = None, *, now: int
    ) -> NamespaceInfo:
        now = self._clock(now)
        check_name("namespace", name)
        config = _valid_namespace_config(config)
        if name in self._namespaces:
            raise NamespaceExists(name)
        namespace = self._namespaces[name] = Namespace(name, config, now)
        return namespace.info()

    def get_namespace(self, name: str) -> NamespaceInfo:
        return self._namespace(name).info()

    def list_namespaces(self) -> list[NamespaceInfo]:
        return [self._namespaces[name].info() for name in sorted(self._namespaces)]

    def update_namespace(self, name: str, config: NamespaceConfig, *, now: int) -> NamespaceInfo:
        now = self._clock(now)
        namespace = self._namespace(name)
        config = _valid_namespace_config(config)
        if config.max_queues is not None and len(namespace.queues) > config.max_queues:
            raise ConfigError(
                "max_queues", f"the namespace already has {len(namespace.queues)} queues"
            )
        namespace.config = config
        namespace.updated_at = now
        return namespace.info()

    def delete_namespace(self, name: str, *, force: bool = False, now: int) -> None:
        """Delete a namespace; one that still has queues needs ``force``."""
        self._clock(now)
        namespace = self._namespace(name)
        check_bool("force", force)
        if namespace.queues and not force:
            raise NotEmpty(name, None, len(namespace.queues))
        del self._namespaces[name]

    def purge_namespace(self, name: str, *, now: int) -> int:
        """Purge every queue of the namespace; returns how many messages went."""
        self._clock(now)
        return sum(queue.purge_ready() for queue in self._namespace(name).queues.values())

    # -- queues ------------------------------------------------------------------

    def create_queue(
        self, namespace: str, name: str, config: QueueConfig | None = None, *, now: int
    ) -> QueueInfo:
        now = self._clock(now)
        ns = self._namespace(namespace)
        check_name("queue", name)
        config = _valid_queue_config(config)
        if name in ns.queues:
            raise QueueExists(namespace, name)
        if ns.config.max_queues is not None and len(ns.queues) >= ns.config.max_queues:
            raise ResourceExhausted(
                f"namespace {namespace!r} already has its maximum of {ns.config.max_queues} queues"
            )
        queue = ns.queues[name] = Queue(namespace, name, config, now, self._seqs)
        return _queue_info(queue)

    def get_queue(self, namespace: str, name: str) -> QueueInfo:
        return _queue_info(self._queue(namespace, name))

    def list_queues(self, namespace: str) -> list[QueueInfo]:
        queues = self._namespace(namespace).queues
        return [_queue_info(queues[name]) for name in sorted(queues)]

    def pause_queue(self, namespace: str, name: str, *, now: int) -> QueueInfo:
        """Dispatch nothing from the queue until ``resume_queue``: dequeues
        (and workers) get nothing from it, a weighted dequeue serves its other
        queues. Everything else goes on: enqueues, peeks, settling the leases
        already held, and the timers (delays, TTLs, lease expiry, retention).
        Pausing a paused queue changes nothing (it stays paused since then)."""
        now = self._clock(now)
        queue = self._queue(namespace, name)
        if queue.paused_at is None:
            queue.paused_at = queue.updated_at = now
        return _queue_info(queue)

    def resume_queue(self, namespace: str, name: str, *, now: int) -> QueueInfo:
        """Dispatch from the queue again, in the order it would have had.
        Resuming a running queue changes nothing."""
        now = self._clock(now)
        queue = self._queue(namespace, name)
        if queue.paused_at is not None:
            queue.paused_at = None
            queue.updated_at = now
        return _queue_info(queue)

    def update_queue(
        self, namespace: str, name: str, config: QueueConfig, *, now: int
    ) -> QueueInfo:
        """Replace a queue's configuration.

        It applies to the messages already held where that makes sense: the
        delivery limit, TTL-free retention, backoff and dedup window are read
        when they are needed, and retention is applied at once. Leases keep
        their deadlines and messages keep their priorities.
        """
        now = self._clock(now)
        queue = self._queue(namespace, name)
        config = _valid_queue_config(config)
        queue.reconfigure(config)
        queue.updated_at = now
        queue.apply_due(now, Transitions())
        return _queue_info(queue)

    def delete_queue(self, namespace: str, name: str, *, force: bool = False, now: int) -> None:
        """Delete a queue; one holding messages (ready to dead) needs ``force``."""
        self._clock(now)
        queue = self._queue(namespace, name)
        check_bool("force", force)
        held = queue.held() + len(queue.dead)
        if held and not force:
            raise NotEmpty(namespace, name, held)
        del self._namespaces[namespace].queues[name]

    def purge_queue(self, namespace: str, name: str, *, now: int) -> int:
        """Remove every ready and delayed message; leased ones stay with their holders."""
        self._clock(now)
        return self._queue(namespace, name).purge_ready()

    # -- enqueue -----------------------------------------------------------------

    def enqueue(
        self,
        namespace: str,
        queue: str,
        payload: bytes,
        *,
        message_id: str,
        now: int,
        priority: int = 0,
        headers: Headers | None = None,
        delay_ms: int | None = None,
        run_at: int | None = None,
        ttl_ms: int | None = None,
        expires_at: int | None = None,
        max_deliveries: int | None = None,
        dedup_key: str | None = None,
        fairness_key: str | None = None,
        cost: int = 1,
        backoff: BackoffPolicy | None = None,
    ) -> EnqueueResult:
        """Enqueue one message. A repeat of a dedup key within the window
        returns the first message's id with ``duplicate=True`` and adds nothing.

        Raises:
            InvalidArgument / PayloadTooLarge: a field broke a rule (named).
            MessageExists: ``message_id`` is already used in this queue.
            QueueFull: the queue is at ``max_length``.
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        message = admit(
            q.config,
            message_id,
            now,
            self._seqs.last + 1,
            payload,
            priority,
            headers,
            delay_ms,
            run_at,
            ttl_ms,
            expires_at,
            max_deliveries,
            dedup_key,
            fairness_key,
            cost,
            backoff,
        )
        if dedup_key is not None:
            first = q.duplicate_of(dedup_key, now)
            if first is not None:
                return _duplicate(q, first)
        if message_id in q.messages:
            raise MessageExists(namespace, queue, message_id)
        admitted = [message]
        q.check_room(admitted)
        self._seqs.last += 1
        return q.insert_many(admitted, now)[0]

    def enqueue_batch(
        self,
        namespace: str,
        queue: str,
        items: Sequence[MessageSpec],
        *,
        message_ids: Sequence[str],
        now: int,
    ) -> list[EnqueueResult]:
        """Enqueue a batch, all or nothing: one bad item rejects the whole batch,
        naming it (``items[3].priority``). Dedup keys repeated inside the batch
        resolve to the first item that carried them.
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        if not isinstance(items, Sequence) or not 1 <= len(items) <= MAX_BATCH:
            raise InvalidArgument("items", f"must hold 1 to {MAX_BATCH} messages")
        if not isinstance(message_ids, Sequence) or len(message_ids) != len(items):
            raise InvalidArgument("message_ids", "must give one id per item")
        try:
            distinct = len(set(message_ids))
        except TypeError:
            raise InvalidArgument("message_ids", "must be a list of message ids") from None
        if distinct != len(message_ids):
            first = next(m for i, m in enumerate(message_ids) if m in message_ids[:i])
            raise MessageExists(namespace, queue, first)
        config, messages = q.config, q.messages
        admitted: list[Message] = []
        # Per item: None until inserted, or the EnqueueResult / id of what it repeats.
        repeats: list[EnqueueResult | str | None] = []
        batch_dedup: dict[str, str] = {}
        for index, spec in enumerate(items):
            message_id = message_ids[index]
            try:
                if type(spec) is not MessageSpec and not isinstance(spec, MessageSpec):
                    raise InvalidArgument("", "must be a MessageSpec")
                message = admit(
                    config,
                    message_id,
                    now,
                    self._seqs.last + 1 + len(admitted),
                    spec.payload,
                    spec.priority,
                    spec.headers,
                    spec.delay_ms,
                    spec.run_at,
                    spec.ttl_ms,
                    spec.expires_at,
                    spec.max_deliveries,
                    spec.dedup_key,
                    spec.fairness_key,
                    spec.cost,
                    spec.backoff,
                )
            except InvalidArgument as error:
                raise error.at(f"items[{index}]") from None
            key = message.dedup_key
            if key is not None:
                if (earlier := q.duplicate_of(key, now)) is not None:
                    repeats.append(_duplicate(q, earlier))
                    continue
                if (earlier := batch_dedup.get(key)) is not None:
                    repeats.append(earlier)
                    continue
                if config.dedup_window_ms:
                    batch_dedup[key] = message_id
            if message_id in messages:
                raise MessageExists(namespace, queue, message_id)
            admitted.append(message)
            repeats.append(None)
        q.check_room(admitted)
        self._seqs.last += len(admitted)
        inserted = q.insert_many(admitted, now)
        if not batch_dedup and len(inserted) == len(repeats):
            return inserted
        by_id = {r.message_id: r for r in inserted}
        fresh = iter(inserted)
        results: list[EnqueueResult] = []
        for repeat in repeats:
            if repeat is None:
                results.append(next(fresh))
            elif isinstance(repeat, str):
                results.append(by_id[repeat]._replace(duplicate=True))
            else:
                results.append(repeat)
        return results

    # -- dequeue and peek ----------------------------------------------------------

    def dequeue(
        self,
        namespace: str,
        queue: str,
        *,
        lock_id: str,
        now: int,
        max_count: int = 1,
        visibility_timeout_ms: int | None = None,
    ) -> list[MessageView]:
        """Lease up to ``max_count`` messages in dispatch order under ``lock_id``.

        Each lease lasts the queue's visibility timeout, or
        ``visibility_timeout_ms`` (1 s - 12 h). Due transitions are applied first.
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        check_id("lock_id", lock_id)
        if type(max_count) is not int or not 1 <= max_count <= MAX_BATCH:
            check_int("max_count", max_count, 1, MAX_BATCH)
        if visibility_timeout_ms is None:
            lease_ms = q.config.visibility_timeout_ms
        else:
            lease_ms = check_int(
                "visibility_timeout_ms", visibility_timeout_ms, SECOND, MAX_LEASE_MS
            )
        q.apply_due(now, Transitions())
        view = q.view
        return [view(m) for m in q.lease(max_count, lock_id, lease_ms, now)]

    def peek(self, namespace: str, queue: str, *, now: int, count: int = 1) -> list[MessageView]:
        """The next ``count`` messages in dispatch order, not locked.

        Applies due transitions first (as dequeue does), so it is a command,
        not a pure read: replicate it, or tick before it.
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        check_int("count", count, 1, MAX_BATCH)
        q.apply_due(now, Transitions())
        return [q.view(m) for m in q.scheduler.peek(count)]

    # -- settling leases -------------------------------------------------------------

    def ack(
        self,
        namespace: str,
        queue: str,
        message_id: str,
        lock_id: str,
        *,
        now: int,
        result: bytes | None = None,
    ) -> None:
        """Settle a lease as done: the message is kept as succeeded for the
        retention period, with ``result`` (a job's outcome, at most the
        queue's max payload) if given.

        Raises:
            MessageNotFound: no such message.
            LockLost: the lock id is wrong or the lease has ended; nothing changed.
            (The same lease acked again succeeds and changes nothing.)
            InvalidArgument / PayloadTooLarge (``result``): nothing changed.
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        q.ack_lease(message_id, lock_id, now, result)
        q.purge_succeeded(now)

    def ack_batch(
        self,
        namespace: str,
        queue: str,
        items: Sequence[tuple[str, str] | tuple[str, str, bytes | None]],
        *,
        now: int,
    ) -> list[KokaqError | None]:
        """Ack many ``(message_id, lock_id)`` pairs, or ``(message_id,
        lock_id, result)`` triples; each succeeds or fails on its own.

        Returns one entry per item: None, or the error that item met.
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        if not isinstance(items, Sequence) or not 1 <= len(items) <= MAX_BATCH:
            raise InvalidArgument("items", f"must hold 1 to {MAX_BATCH} pairs")
        results: list[KokaqError | None] = []
        ack = q.ack_lease
        for index, item in enumerate(items):
            if is_pair(item):
                result = None
            elif is_triple(item):
                result = item[2]  # type: ignore[misc]  # a triple, checked just above
            else:
                message = "must be (message_id, lock_id) or (message_id, lock_id, result)"
                results.append(InvalidArgument(f"items[{index}]", message))
                continue
            try:
                if result is None:
                    ack(item[0], item[1], now)
                else:  # the field named only when there is a result to name
                    ack(item[0], item[1], now, result, f"items[{index}].result")
                results.append(None)
            except KokaqError as error:
                results.append(error)
        q.purge_succeeded(now)
        return results

    def nack(
        self,
        namespace: str,
        queue: str,
        message_id: str,
        lock_id: str,
        *,
        now: int,
        reason: FailureReason = FailureReason.PROCESSING_ERROR,
        error: str | None = None,
        delay_ms: int | None = None,
        dead_letter: bool = False,
    ) -> NackResult:
        """Settle a lease as failed.

        The message goes back to the queue after ``delay_ms`` (or the queue's
        backoff), or to the DLQ when ``dead_letter`` is set or its deliveries
        are used up (dropped instead when the queue's DLQ is off). The same
        lease nacked again, until the message is leased again, changes nothing
        and answers where the message is now (a client retrying a lost answer).
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        try:
            reason = FailureReason(reason)
        except ValueError:
            raise InvalidArgument("reason", "is not a known failure reason") from None
        if error is not None:
            check_text("error", error, _MAX_ERROR_BYTES)
        if delay_ms is not None:
            check_int("delay_ms", delay_ms, 0, MAX_DELAY_MS)
        check_bool("dead_letter", dead_letter)
        message, live = q.settling(message_id, lock_id, now, by_nack=True)
        if not live:
            return _nacked(message)  # the same lease nacked again: where it went
        return q.nack(message, now, reason, error, delay_ms, dead_letter)

    def extend(
        self,
        namespace: str,
        queue: str,
        message_id: str,
        lock_id: str,
        *,
        add_ms: int,
        now: int,
        from_deadline: int | None = None,
    ) -> int:
        """Push the lease deadline back by ``add_ms``; returns the new deadline.

        With ``from_deadline`` (the deadline the caller last saw), the lease
        ends at ``from_deadline + add_ms`` unless it already ends later: the
        same request sent twice (a retry after a lost answer) extends once."""
        now = self._clock(now)
        q = self._queue(namespace, queue)
        check_int("add_ms", add_ms, 1, MAX_LEASE_MS)
        if from_deadline is not None:
            check_int("from_deadline", from_deadline, 0, MAX_TIME)
        message = q.locked(message_id, lock_id, now)
        current = message.lock_deadline or now
        deadline = (current if from_deadline is None else from_deadline) + add_ms
        if deadline - now > MAX_LEASE_MS:
            raise InvalidArgument("add_ms", "a lease may not reach more than 12 h ahead")
        if deadline <= current and from_deadline is not None:
            return current  # extended this far already
        return q.relock(message, deadline, now)

    def refresh(
        self, namespace: str, queue: str, message_id: str, lock_id: str, *, now: int
    ) -> int:
        """Restart the lease's visibility timeout from now; returns the new deadline."""
        now = self._clock(now)
        q = self._queue(namespace, queue)
        message = q.locked(message_id, lock_id, now)
        return q.relock(message, now + message.lease_ms, now)

    def report_progress(
        self, namespace: str, queue: str, message_id: str, lock_id: str, progress: str, *, now: int
    ) -> int:
        """Record how far the lease's holder is (free text, a job's JSON, at
        most ``MAX_PROGRESS`` bytes; shown with the message until it is leased
        again) and restart the visibility timeout, as ``refresh`` does: a
        report is a heartbeat. Returns the new deadline."""
        now = self._clock(now)
        q = self._queue(namespace, queue)
        check_text("progress", progress, MAX_PROGRESS)
        message = q.locked(message_id, lock_id, now)
        message.progress = progress
        return q.relock(message, now + message.lease_ms, now)

    def set_visibility_timeout(
        self,
        namespace: str,
        queue: str,
        message_id: str,
        lock_id: str,
        *,
        timeout_ms: int,
        now: int,
    ) -> int:
        """Make the lease end ``timeout_ms`` from now (and refresh with it from then on)."""
        now = self._clock(now)
        q = self._queue(namespace, queue)
        check_int("timeout_ms", timeout_ms, SECOND, MAX_LEASE_MS)
        message = q.locked(message_id, lock_id, now)
        message.lease_ms = timeout_ms
        return q.relock(message, now + timeout_ms, now)

    def release(
        self,
        namespace: str,
        queue: str,
        message_id: str,
        lock_id: str,
        *,
        now: int,
        delay_ms: int | None = None,
        visible_at: int | None = None,
    ) -> int:
        """Give a lease back without failing it: visible now, after ``delay_ms``
        or at ``visible_at``. The delivery is not counted. Returns when it is visible.
        The same lease released again, until the message is leased again,
        changes nothing and returns that time.
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        if delay_ms is not None:
            if visible_at is not None:
                raise InvalidArgument("visible_at", "give delay_ms or visible_at, not both")
            visible_at = now + check_int("delay_ms", delay_ms, 0, MAX_DELAY_MS)
        elif visible_at is not None:
            check_int("visible_at", visible_at, 0, now + MAX_DELAY_MS)
        message, live = q.settling(message_id, lock_id, now, by_nack=False)
        if not live:
            return message.visible_at  # the same lease released again
        return q.release(message, max(now, visible_at or now), now)

    # -- reading -----------------------------------------------------------------------

    def get_message(self, namespace: str, queue: str, message_id: str) -> MessageView:
        """A message in any state it is still held in (ready to dead)."""
        q = self._queue(namespace, queue)
        check_id("message_id", message_id)
        return q.view(q.get(message_id))

    def stats(self, namespace: str, queue: str, *, now: int | None = None) -> QueueStats:
        """Counts by state, the age of the oldest ready message, and running totals."""
        q = self._queue(namespace, queue)
        at = self._now if now is None else max(self._now, check_int("now", now, 0, MAX_TIME))
        oldest = q.oldest_ready.oldest()
        return QueueStats(
            ready=len(q.scheduler),
            delayed=len(q.delayed),
            leased=len(q.leased),
            succeeded=len(q.succeeded),
            dead=len(q.dead),
            oldest_ready_age_ms=None if oldest is None else at - oldest.created_at,
            totals=q.totals.as_dict(),
            paused=q.paused_at is not None,
        )

    # -- time-driven transitions ---------------------------------------------------------

    def tick(self, now: int) -> TickReport:
        """Apply every transition due by ``now`` in every queue and report them."""
        now = self._clock(now)
        changes = Transitions()
        changed: list[tuple[str, str]] = []
        for namespace in self._namespaces.values():
            for queue in namespace.queues.values():
                before = changes.total()
                queue.apply_due(now, changes)
                if changes.total() != before:
                    changed.append((queue.namespace, queue.name))
        return TickReport(
            promoted=changes.promoted,
            lease_expired=changes.lease_expired,
            expired=changes.expired,
            dead_lettered=changes.dead_lettered,
            dropped=changes.dropped,
            purged=changes.purged,
            queues=tuple(changed),
            next_due=self.next_due(),
        )

    def next_due(self) -> int | None:
        """The earliest time any transition falls due, or None; a pure read."""
        due = [
            when
            for namespace in self._namespaces.values()
            for queue in namespace.queues.values()
            if (when := queue.next_due()) is not None
        ]
        return min(due) if due else None

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole engine as msgpack bytes; ``Engine.restore`` gives it back."""
        return _snapshot.dump(self._namespaces, self._now, self._seqs.last, self._mixes)

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        engine = cls()
        engine._namespaces, engine._now, engine._seqs, engine._mixes = _snapshot.load(data)
        return engine


def _valid_namespace_config(config: NamespaceConfig | None) -> NamespaceConfig:
    if config is None:
        return NamespaceConfig()
    if not isinstance(config, NamespaceConfig):
        raise ConfigError("config", "must be a NamespaceConfig")
    config.validate()
    return config


def _valid_queue_config(config: QueueConfig | None) -> QueueConfig:
    if config is None:
        return QueueConfig()
    if not isinstance(config, QueueConfig):
        raise ConfigError("config", "must be a QueueConfig")
    config.validate()
    return config


def _queue_info(queue: Queue) -> QueueInfo:
    return QueueInfo(
        queue.namespace,
        queue.name,
        queue.config,
        queue.created_at,
        queue.updated_at,
        queue.paused_at,
    )


def _duplicate(queue: Queue, first_id: str) -> EnqueueResult:
    first = queue.messages.get(first_id)
    if first is None:  # settled and purged since; the id is still the answer
        return EnqueueResult(first_id, None, None, True)
    return EnqueueResult(first_id, first.state, first.visible_at, True)


def _nacked(message: Message) -> NackResult:
    """A repeated nack's answer: where the first one sent the message, as it is now."""
    if message.state is MessageState.DEAD:
        return NackResult(NackOutcome.DEAD_LETTERED)
    if message.state is MessageState.DELAYED:
        return NackResult(NackOutcome.DELAYED, message.visible_at)
    return NackResult(NackOutcome.REQUEUED, message.visible_at)
