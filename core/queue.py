"""One queue: its messages, their indexes and every lifecycle transition.

States and the index that holds a message in each::

    ready      scheduler            (and oldest_ready, for the age statistic)
    delayed    delayed  (visible_at)
    leased     leased   (lock_deadline)
    succeeded  succeeded (a deque in ack order, for retention)
    dead       dead     (a sorted dict in dead-letter order)

plus ``ttl`` (expires_at) for held messages that have a TTL. Methods that can
fail check everything before they change anything. Time (``now``) arrives
already clamped to be non-decreasing by the engine.
"""

from __future__ import annotations

from collections import deque

from sortedcontainers import SortedDict

from kokaq.core.backoff import retry_delay
from kokaq.core.config import QueueConfig, RetryPosition
from kokaq.core.errors import (
    InvalidArgument,
    InvalidState,
    LockLost,
    MessageNotFound,
    PayloadTooLarge,
    QueueFull,
)
from kokaq.core.indexes import LazyHeap, OldestIndex, deadline_key
from kokaq.core.message import FailureReason, Message, MessageState, MessageView
from kokaq.core.results import EnqueueResult, NackOutcome, NackResult, Totals
from kokaq.core.validation import check_id
from kokaq.core.weighted import WeightedScheduler

__all__ = ["Queue", "SeqCounter", "Transitions"]

READY = MessageState.READY
DELAYED = MessageState.DELAYED
LEASED = MessageState.LEASED
SUCCEEDED = MessageState.SUCCEEDED
DEAD = MessageState.DEAD
# NamedTuple's own constructors run Python code; results are built the C way.
_new_tuple = tuple.__new__


class Transitions:
    """Counts of the time-driven transitions applied, for ``tick`` reports."""

    __slots__ = ("dead_lettered", "dropped", "expired", "lease_expired", "promoted", "purged")

    def __init__(self) -> None:
        self.promoted = 0
        self.lease_expired = 0
        self.expired = 0
        self.dead_lettered = 0
        self.dropped = 0
        self.purged = 0

    def total(self) -> int:
        return (
            self.promoted
            + self.lease_expired
            + self.expired
            + self.dead_lettered
            + self.dropped
            + self.purged
        )


class SeqCounter:
    """The engine's message sequence, shared with its queues (a retried
    message placed behind its equals takes a fresh number)."""

    __slots__ = ("last",)

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def next(self) -> int:
        self.last += 1
        return self.last


def make_scheduler(config: QueueConfig) -> WeightedScheduler:
    return WeightedScheduler(config.scheduling)


def _by_seq(message: Message) -> int:
    return message.seq


class Queue:
    __slots__ = (
        "config",
        "created_at",
        "dead",
        "dedup",
        "dedup_order",
        "delayed",
        "key_counts",
        "leased",
        "messages",
        "name",
        "namespace",
        "oldest_ready",
        "paused_at",
        "scheduler",
        "seqs",
        "succeeded",
        "totals",
        "ttl",
        "updated_at",
    )

    def __init__(
        self, namespace: str, name: str, config: QueueConfig, now: int, seqs: SeqCounter
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.config = config
        self.seqs = seqs
        self.created_at = now
        self.updated_at = now
        self.paused_at: int | None = None  # while set, lease() dispatches nothing
        self.messages: dict[str, Message] = {}
        self.scheduler = make_scheduler(config)
        self.oldest_ready = OldestIndex(READY)
        self.delayed = LazyHeap("entry")
        self.leased = LazyHeap("entry")
        self.ttl = LazyHeap("ttl_entry")
        self.succeeded: deque[Message] = deque()
        self.dead: SortedDict[int, Message] = SortedDict()
        # dedup key -> (message id, enqueued at); dedup_order keeps them by time.
        self.dedup: dict[str, tuple[str, int]] = {}
        self.dedup_order: deque[tuple[int, str]] = deque()
        self.totals = Totals()
        # Held messages per fairness key, kept only while a quota is set.
        self.key_counts: dict[str, int] | None = None
        if config.scheduling.max_per_key is not None:
            self.key_counts = {}

    # -- reading ---------------------------------------------------------------

    def view(self, m: Message) -> MessageView:
        return _new_tuple(
            MessageView,
            (
                m.id,
                self.namespace,
                self.name,
                m.state,
                m.payload,
                m.priority,
                m.headers,
                m.fairness_key,
                m.cost,
                m.created_at,
                m.updated_at,
                m.visible_at,
                m.expires_at,
                m.deliveries,
                m.max_deliveries,
                m.dedup_key,
                m.lock_id if m.state is LEASED else None,
                m.lock_deadline,
                m.last_error,
                m.failure_reason,
                m.backoff,
                m.result,
                m.progress,
            ),
        )

    def get(self, message_id: str) -> Message:
        message = self.messages.get(message_id)
        if message is None:
            raise MessageNotFound(self.namespace, self.name, message_id)
        return message

    def held(self) -> int:
        """Messages that count against ``max_length``: ready, delayed and leased."""
        return len(self.scheduler) + len(self.delayed) + len(self.leased)

    def next_due(self) -> int | None:
        """The earliest time at which a time-driven transition falls due."""
        due: list[int] = []
        for heap in (self.delayed, self.leased, self.ttl):
            key = heap.min_key()
            if key is not None:
                due.append(key >> 64)
        if self.succeeded:
            due.append(self._retention_deadline())
        if self.dedup_order:
            due.append(self.dedup_order[0][0] + self.config.dedup_window_ms)
        return min(due) if due else None

    # -- enqueue ---------------------------------------------------------------

    def duplicate_of(self, dedup_key: str, now: int) -> str | None:
        """The id of the message first enqueued under ``dedup_key`` in the window."""
        found = self.dedup.get(dedup_key)
        if found is not None and found[1] + self.config.dedup_window_ms > now:
            return found[0]
        return None

    def check_room(self, admitted: list[Message]) -> None:
        """Raise ``QueueFull`` if ``admitted`` would break the length or a key quota."""
        limit = self.config.max_length
        if limit is not None and self.held() + len(admitted) > limit:
            raise QueueFull(self.namespace, self.name, limit)
        counts = self.key_counts
        if counts is None:  # no quota
            return
        quota = self.config.scheduling.max_per_key or 0
        adding: dict[str, int] = {}
        for message in admitted:
            key = message.fairness_key
            if key is not None:
                adding[key] = adding.get(key, 0) + 1
                if counts.get(key, 0) + adding[key] > quota:
                    raise QueueFull(self.namespace, self.name, quota, key)

    def _count_in(self, message: Message) -> None:
        counts = self.key_counts
        if counts is not None and (key := message.fairness_key) is not None:
            counts[key] = counts.get(key, 0) + 1

    def _count_out(self, message: Message) -> None:
        counts = self.key_counts
        if counts is not None and (key := message.fairness_key) is not None:
            left = counts[key] - 1
            if left:
                counts[key] = left
            else:
                del counts[key]

    def insert_many(self, admitted: list[Message], now: int) -> list[EnqueueResult]:
        """Add admitted messages (already checked: ids unused, room, dedup)."""
        messages = self.messages
        add, add_oldest = self.scheduler.add, self.oldest_ready.add
        dedup_on = self.config.dedup_window_ms > 0
        counted = self.key_counts is not None
        results = []
        for message in admitted:
            messages[message.id] = message
            if counted:
                self._count_in(message)
            if message.visible_at > now:
                message.state = DELAYED
                self.delayed.push(deadline_key(message.visible_at, message.seq), message)
            else:
                add(message)
                add_oldest(message)
            if message.expires_at is not None:
                self.ttl.push(deadline_key(message.expires_at, message.seq), message)
            if message.dedup_key is not None and dedup_on:
                self.dedup[message.dedup_key] = (message.id, now)
                self.dedup_order.append((now, message.dedup_key))
            results.append(
                _new_tuple(EnqueueResult, (message.id, message.state, message.visible_at, False))
            )
        self.totals.enqueued += len(admitted)
        return results

    # -- dequeue -----------------------------------------------------------------

    def lease(self, max_count: int, lock_id: str, lease_ms: int, now: int) -> list[Message]:
        """Dispatch up to ``max_count`` messages, each leased until ``now + lease_ms``
        (none while the queue is paused)."""
        out: list[Message] = []
        if self.paused_at is not None:
            return out
        pop = self.scheduler.pop
        push = self.leased.push
        deadline = now + lease_ms
        while len(out) < max_count:
            message = pop()
            if message is None:
                break
            message.state = LEASED
            message.lock_id = lock_id
            message.lock_deadline = deadline
            message.lease_ms = lease_ms
            message.deliveries += 1
            message.updated_at = now
            message.progress = None  # a new attempt starts from nothing
            push(deadline_key(deadline, message.seq), message)
            out.append(message)
        if out:
            self.oldest_ready.removed_many(len(out))
            self.totals.dequeued += len(out)
        return out

    def locked(self, message_id: str, lock_id: str, now: int) -> Message:
        """The message leased under ``lock_id`` whose lease has not ended.

        Ids are only checked for form on the way to an error: a message found
        under its id with its lock id matching proves both well-formed.
        """
        message = self.messages.get(message_id) if type(message_id) is str else None
        if (
            message is not None
            and message.state is LEASED
            and message.lock_id == lock_id
            and message.lock_deadline is not None
            and message.lock_deadline > now
        ):
            return message
        check_id("message_id", message_id)
        check_id("lock_id", lock_id)
        if message is None:
            raise MessageNotFound(self.namespace, self.name, message_id)
        raise LockLost(message_id)

    def settling(
        self, message_id: str, lock_id: str, now: int, by_nack: bool
    ) -> tuple[Message, bool]:
        """The message a nack (or a release) of ``lock_id`` settles, and whether
        that lease is live. Not live: that same settle already gave the message
        back and it waits for its next lease — a client that lost the answer (a
        failover) retries, and must not be told its lease was lost."""
        try:
            return self.locked(message_id, lock_id, now), True
        except LockLost:
            message = self.messages[message_id]  # locked() raised LockLost: it exists
            if message.returned == (lock_id, by_nack) and (
                message.state is READY
                or message.state is DELAYED
                or (by_nack and message.state is DEAD)
            ):
                return message, False
            raise

    # -- settling a lease --------------------------------------------------------

    def ack_lease(
        self,
        message_id: str,
        lock_id: str,
        now: int,
        result: bytes | None = None,
        field: str = "result",
    ) -> None:
        """Ack the lease ``lock_id``, keeping ``result`` with the message. A
        repeated ack of the same lease succeeds and changes nothing: a client
        that lost the first answer (a failover) retries, and must not be told
        its lease was lost."""
        if result is not None:
            self.check_result(result, field)
        try:
            message = self.locked(message_id, lock_id, now)
        except LockLost:
            message = self.messages[message_id]
            if message.state is SUCCEEDED and message.lock_id == lock_id:
                return
            raise
        self.ack(message, now)
        message.result = result

    def check_result(self, result: object, field: str = "result") -> None:
        if type(result) is not bytes:
            raise InvalidArgument(field, "must be bytes")
        if len(result) > self.config.max_payload_bytes:
            raise PayloadTooLarge(field, len(result), self.config.max_payload_bytes)

    def ack(self, message: Message, now: int) -> None:
        """Settle as succeeded; the caller runs ``purge_succeeded`` afterwards.
        The lock id stays on the message (views hide it) for ``ack_lease``."""
        self.leased.discard(message)
        if message.ttl_entry is not None:
            self.ttl.discard(message)
        self._count_out(message)
        message.state = SUCCEEDED
        message.lock_deadline = None
        message.updated_at = now
        self.succeeded.append(message)
        self.totals.acked += 1

    def nack(
        self,
        message: Message,
        now: int,
        reason: FailureReason,
        error: str | None,
        delay_ms: int | None,
        dead_letter: bool,
    ) -> NackResult:
        if dead_letter and not self.config.dead_letter:
            raise InvalidArgument("dead_letter", "this queue has dead-lettering turned off")
        message.returned = (message.lock_id or "", True)
        self._unlease(message, now)
        message.failure_reason = reason
        message.last_error = error
        self.totals.nacked += 1
        if dead_letter:
            self._to_dlq(message, now)
            return NackResult(NackOutcome.DEAD_LETTERED)
        if message.expires_at is not None and message.expires_at <= now:
            return NackResult(self._expire(message, now, None))
        if self._exhausted(message):
            return NackResult(self._fail(message, now, None))
        if delay_ms is None:
            policy = message.backoff or self.config.backoff
            delay_ms = retry_delay(policy, message.id, message.deliveries)
        self._requeue(message, now + delay_ms, now)
        if delay_ms:
            return NackResult(NackOutcome.DELAYED, message.visible_at)
        return NackResult(NackOutcome.REQUEUED, message.visible_at)

    def release(self, message: Message, visible_at: int, now: int) -> int:
        """Give the lease back; the delivery does not count against max deliveries."""
        message.returned = (message.lock_id or "", False)
        self._unlease(message, now)
        message.deliveries = max(0, message.deliveries - 1)
        if message.expires_at is not None and message.expires_at <= visible_at:
            # It would expire before anyone could take it again.
            self._expire(message, now, None)
            return visible_at
        self._requeue(message, visible_at, now)
        return message.visible_at

    def relock(self, message: Message, deadline: int, now: int) -> int:
        """Move a live lease's deadline (extend / refresh / set visibility)."""
        self.leased.discard(message)
        message.lock_deadline = deadline
        message.updated_at = now
        self.leased.push(deadline_key(deadline, message.seq), message)
        return deadline

    def _unlease(self, message: Message, now: int) -> None:
        self.leased.discard(message)
        message.lock_id = None
        message.lock_deadline = None
        message.updated_at = now

    def _exhausted(self, message: Message) -> bool:
        limit = message.max_deliveries
        if limit is None:
            limit = self.config.max_deliveries
        return limit > 0 and message.deliveries >= limit

    def _requeue(self, message: Message, visible_at: int, now: int) -> None:
        """Back to ready (or delayed), keeping priority and created_at, and its
        seq too unless the queue puts returning messages behind their equals."""
        if self.config.scheduling.retry_position == RetryPosition.BEHIND:
            message.seq = self.seqs.next()
            if message.ttl_entry is not None:  # its key carries the seq
                self.ttl.discard(message)
        message.visible_at = max(visible_at, now)
        if message.visible_at > now:
            message.state = DELAYED
            self.delayed.push(deadline_key(message.visible_at, message.seq), message)
        else:
            message.state = READY
            self.scheduler.add(message)
            self.oldest_ready.add(message)
        if message.expires_at is not None and message.ttl_entry is None:
            self.ttl.push(deadline_key(message.expires_at, message.seq), message)

    def _fail(self, message: Message, now: int, changes: Transitions | None) -> NackOutcome:
        """Deliveries used up: to the DLQ, or dropped when it is off."""
        if self.config.dead_letter:
            self._to_dlq(message, now)
            if changes is not None:
                changes.dead_lettered += 1
            return NackOutcome.DEAD_LETTERED
        self._drop(message)
        if changes is not None:
            changes.dropped += 1
        return NackOutcome.DROPPED

    def _expire(self, message: Message, now: int, changes: Transitions | None) -> NackOutcome:
        message.failure_reason = FailureReason.EXPIRED
        self.totals.expired += 1
        if changes is not None:
            changes.expired += 1
        self._fail(message, now, changes)
        return NackOutcome.EXPIRED

    def _leave_held_state(self, message: Message) -> None:
        """Take a ready or delayed message out of its index."""
        if message.state is READY:
            self.scheduler.remove(message)
            self.oldest_ready.removed_many(1)
        elif message.state is DELAYED:
            self.delayed.discard(message)
        elif message.state is LEASED:
            self.leased.discard(message)
            message.lock_id = None
            message.lock_deadline = None
        self.ttl.discard(message)

    def _to_dlq(self, message: Message, now: int) -> None:
        self._leave_held_state(message)
        self._count_out(message)
        message.state = DEAD
        message.updated_at = now
        self.dead[deadline_key(now, message.seq)] = message
        self.totals.dead_lettered += 1

    def _drop(self, message: Message) -> None:
        self._leave_held_state(message)
        self._count_out(message)
        del self.messages[message.id]

    # -- time --------------------------------------------------------------------

    def apply_due(self, now: int, changes: Transitions) -> None:
        """Apply every time-driven transition due at or before ``now``."""
        limit = (now + 1) << 64
        pop = self.delayed.pop_below
        while (message := pop(limit)) is not None:
            message.state = READY
            message.updated_at = message.visible_at
            self.scheduler.add(message)
            self.oldest_ready.add(message)
            changes.promoted += 1
        pop = self.leased.pop_below
        while (message := pop(limit)) is not None:
            self._lease_ended(message, now, changes)
        pop = self.ttl.pop_below
        while (message := pop(limit)) is not None:
            if message.state is not LEASED:  # a leased message expires when its lease ends
                self._expire(message, now, changes)
        if self.succeeded:
            changes.purged += self.purge_succeeded(now)
        window = self.config.dedup_window_ms
        order = self.dedup_order
        while order and order[0][0] + window <= now:
            enqueued_at, key = order.popleft()
            if self.dedup.get(key, (None, None))[1] == enqueued_at:
                del self.dedup[key]

    def _lease_ended(self, message: Message, now: int, changes: Transitions) -> None:
        deadline = message.lock_deadline or now
        self._unlease(message, deadline)
        message.failure_reason = FailureReason.VISIBILITY_TIMEOUT_EXCEEDED
        changes.lease_expired += 1
        if message.expires_at is not None and message.expires_at <= now:
            self._expire(message, now, changes)
        elif self._exhausted(message):
            self._fail(message, now, changes)
        else:
            self._requeue(message, deadline, now)

    def _retention_deadline(self) -> int:
        if len(self.succeeded) > self.config.retention.max_count:
            return self.succeeded[0].updated_at
        return self.succeeded[0].updated_at + self.config.retention.period_ms

    def purge_succeeded(self, now: int) -> int:
        """Drop succeeded messages past the retention period or count; oldest first."""
        done = self.succeeded
        retention = self.config.retention
        purged = 0
        while done and (
            len(done) > retention.max_count or done[0].updated_at + retention.period_ms <= now
        ):
            del self.messages[done.popleft().id]
            purged += 1
        return purged

    # -- dead-letter queue -------------------------------------------------------

    def dead_page(self, after: int | None, limit: int) -> tuple[list[Message], int | None]:
        if after is None:
            keys = self.dead.irange()
        else:
            keys = self.dead.irange(minimum=after, inclusive=(False, True))
        found: list[Message] = []
        last: int | None = None
        for key in keys:
            if len(found) == limit:
                return found, last
            found.append(self.dead[key])
            last = key
        return found, None

    def dead_messages(self, message_ids: list[str] | None) -> list[Message]:
        """The dead messages named (all when None); raises before anything changes."""
        if message_ids is None:
            return list(self.dead.values())
        found = []
        for message_id in message_ids:
            message = self.get(message_id)
            if message.state is not DEAD:
                raise InvalidState(message_id, message.state.value, DEAD.value)
            found.append(message)
        return found

    def _leave_dlq(self, message: Message) -> None:
        del self.dead[deadline_key(message.updated_at, message.seq)]

    def redrive(self, messages: list[Message], now: int) -> int:
        for message in messages:
            self._leave_dlq(message)
            message.deliveries = 0
            if message.expires_at is not None and message.expires_at <= now:
                message.expires_at = None  # it died of old age; a redrive revives it
            message.updated_at = now
            self._count_in(message)
            self._requeue(message, now, now)
        return len(messages)

    def purge_dead(self, messages: list[Message]) -> int:
        for message in messages:
            self._leave_dlq(message)
            del self.messages[message.id]
        return len(messages)

    def remove(self, message: Message) -> None:
        """Delete a ready, delayed or dead message (a cancelled job)."""
        if message.state is DEAD:
            self._leave_dlq(message)
            del self.messages[message.id]
        else:
            self._drop(message)

    def purge_ready(self) -> int:
        """Remove every ready and delayed message (leased ones stay with their holders)."""
        removed = self.scheduler.clear() + self.delayed.clear()
        self.oldest_ready.clear()
        for message in removed:
            self.ttl.discard(message)
            self._count_out(message)
            del self.messages[message.id]
        return len(removed)

    # -- configuration and priorities ---------------------------------------------

    def reconfigure(self, config: QueueConfig) -> None:
        """Take a new configuration; a new scheduling policy re-sorts the
        ready messages under it (nothing lost, nothing duplicated)."""
        old = self.config
        self.config = config
        if config.scheduling != old.scheduling:
            ready = self.scheduler.clear()
            self.scheduler = make_scheduler(config)
            for message in sorted(ready, key=_by_seq):
                self.scheduler.add(message)
        if (config.scheduling.max_per_key is None) != (self.key_counts is None):
            self.recount_keys()

    def recount_keys(self) -> None:
        """Rebuild the per-key counts (kept only while a quota is set)."""
        if self.config.scheduling.max_per_key is None:
            self.key_counts = None
            return
        self.key_counts = {}
        for message in self.messages.values():
            if message.state is READY or message.state is DELAYED or message.state is LEASED:
                self._count_in(message)

    def reprioritize(self, messages: list[Message], priority: int) -> int:
        """Give ``messages`` (none succeeded) a new priority; ready ones move."""
        for message in messages:
            if message.state is READY:
                self.scheduler.remove(message)
                message.priority = priority
                self.scheduler.add(message)
            else:
                message.priority = priority
        return len(messages)
