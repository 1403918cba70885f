"""A naive reference model of one queue: plain lists, re-sorted and rescanned at every step.

It restates the engine's rules as directly as possible (no indexes, no lazy
deletion) so the property tests can compare the two step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

from kokaq.core import FailureReason, MessageState, NackOutcome, QueueConfig
from kokaq.core.backoff import retry_delay

READY, DELAYED, LEASED = MessageState.READY, MessageState.DELAYED, MessageState.LEASED
SUCCEEDED, DEAD = MessageState.SUCCEEDED, MessageState.DEAD


@dataclass
class ModelMessage:
    id: str
    priority: int
    seq: int
    created_at: int
    visible_at: int
    expires_at: int | None
    max_deliveries: int | None
    dedup_key: str | None
    state: MessageState = READY
    deliveries: int = 0
    lock_id: str | None = None
    acked_lock: str | None = None  # the lease an ack settled
    returned: tuple[str, bool] | None = None  # (lock, by a nack?) a nack or release gave back
    lock_deadline: int | None = None
    lease_ms: int = 0
    updated_at: int = 0
    failure_reason: FailureReason | None = None
    dead_at: int | None = None


class Model:
    def __init__(self, config: QueueConfig) -> None:
        self.config = config
        self.messages: dict[str, ModelMessage] = {}
        self.succeeded: list[str] = []  # in ack order
        self.dedup: dict[str, tuple[str, int]] = {}
        self.seq = 0
        self.totals = dict.fromkeys(
            ["enqueued", "dequeued", "acked", "nacked", "expired", "dead_lettered"], 0
        )

    # -- helpers ---------------------------------------------------------------------

    def in_state(self, state: MessageState) -> list[ModelMessage]:
        return [m for m in self.messages.values() if m.state is state]

    def ready_order(self) -> list[ModelMessage]:
        return sorted(self.in_state(READY), key=lambda m: (-m.priority, m.seq))

    def dead_order(self) -> list[ModelMessage]:
        return sorted(self.in_state(DEAD), key=lambda m: (m.dead_at or 0, m.seq))

    def held(self) -> int:
        return len(self.in_state(READY) + self.in_state(DELAYED) + self.in_state(LEASED))

    def exhausted(self, m: ModelMessage) -> bool:
        limit = self.config.max_deliveries if m.max_deliveries is None else m.max_deliveries
        return limit > 0 and m.deliveries >= limit

    def to_dead_or_drop(self, m: ModelMessage, now: int) -> NackOutcome:
        if self.config.dead_letter:
            m.state, m.updated_at, m.dead_at = DEAD, now, now
            m.lock_id = m.lock_deadline = None
            self.totals["dead_lettered"] += 1
            return NackOutcome.DEAD_LETTERED
        del self.messages[m.id]
        return NackOutcome.DROPPED

    def expire(self, m: ModelMessage, now: int) -> None:
        m.failure_reason = FailureReason.EXPIRED
        self.totals["expired"] += 1
        self.to_dead_or_drop(m, now)

    def requeue(self, m: ModelMessage, visible_at: int, now: int) -> None:
        m.lock_id = m.lock_deadline = None
        m.visible_at = max(visible_at, now)
        m.state = DELAYED if m.visible_at > now else READY

    # -- time ------------------------------------------------------------------------

    def apply_due(self, now: int) -> None:
        for m in self.in_state(DELAYED):
            if m.visible_at <= now:
                m.state, m.updated_at = READY, m.visible_at
        for m in self.in_state(LEASED):
            deadline = m.lock_deadline or 0
            if deadline <= now:
                m.lock_id = m.lock_deadline = None
                m.updated_at = deadline
                m.failure_reason = FailureReason.VISIBILITY_TIMEOUT_EXCEEDED
                if m.expires_at is not None and m.expires_at <= now:
                    self.expire(m, now)
                elif self.exhausted(m):
                    self.to_dead_or_drop(m, now)
                else:
                    self.requeue(m, deadline, now)
        for m in self.in_state(READY) + self.in_state(DELAYED):
            if m.expires_at is not None and m.expires_at <= now:
                self.expire(m, now)
        self.purge_succeeded(now)
        window = self.config.dedup_window_ms
        self.dedup = {k: v for k, v in self.dedup.items() if v[1] + window > now}

    def purge_succeeded(self, now: int) -> None:
        retention = self.config.retention
        while self.succeeded and (
            len(self.succeeded) > retention.max_count
            or self.messages[self.succeeded[0]].updated_at + retention.period_ms <= now
        ):
            del self.messages[self.succeeded.pop(0)]

    # -- operations ------------------------------------------------------------------

    def enqueue(
        self,
        message_id: str,
        now: int,
        priority: int,
        delay_ms: int | None,
        ttl_ms: int | None,
        dedup_key: str | None,
        max_deliveries: int | None,
    ) -> tuple[str, bool] | str:
        """(id, duplicate), or the name of the error expected."""
        visible_at = now + (delay_ms or 0)
        expires_at = None if ttl_ms is None else now + ttl_ms
        if expires_at is not None and expires_at <= visible_at:
            return "InvalidArgument"
        if dedup_key is not None and dedup_key in self.dedup:
            first, at = self.dedup[dedup_key]
            if at + self.config.dedup_window_ms > now:
                return first, True
        if self.config.max_length is not None and self.held() >= self.config.max_length:
            return "QueueFull"
        self.seq += 1
        m = ModelMessage(
            message_id, priority, self.seq, now, visible_at, expires_at, max_deliveries, dedup_key
        )
        m.updated_at = now
        m.state = DELAYED if visible_at > now else READY
        self.messages[message_id] = m
        if dedup_key is not None and self.config.dedup_window_ms:
            self.dedup[dedup_key] = (message_id, now)
        self.totals["enqueued"] += 1
        return message_id, False

    def dequeue(self, now: int, count: int, lock_id: str, lease_ms: int) -> list[str]:
        self.apply_due(now)
        taken = self.ready_order()[:count]
        for m in taken:
            m.state, m.lock_id, m.lock_deadline = LEASED, lock_id, now + lease_ms
            m.lease_ms = lease_ms
            m.deliveries += 1
            m.updated_at = now
        self.totals["dequeued"] += len(taken)
        return [m.id for m in taken]

    def peek(self, now: int, count: int) -> list[str]:
        self.apply_due(now)
        return [m.id for m in self.ready_order()[:count]]

    def locked(self, message_id: str, lock_id: str, now: int) -> ModelMessage | str:
        m = self.messages.get(message_id)
        if m is None:
            return "MessageNotFound"
        if m.state is not LEASED or m.lock_id != lock_id or (m.lock_deadline or 0) <= now:
            return "LockLost"
        return m

    def given_back(self, message_id: str, lock_id: str, by_nack: bool) -> ModelMessage | None:
        """The message a nack (or release) of ``lock_id`` gave back, not leased since."""
        m = self.messages.get(message_id)
        states = (READY, DELAYED, DEAD) if by_nack else (READY, DELAYED)
        if m is None or m.returned != (lock_id, by_nack) or m.state not in states:
            return None
        return m

    def ack(self, message_id: str, lock_id: str, now: int) -> str | None:
        m = self.locked(message_id, lock_id, now)
        if isinstance(m, str):
            acked = self.messages.get(message_id)
            if acked is not None and acked.state is SUCCEEDED and acked.acked_lock == lock_id:
                # The same lease acked again changes nothing, but like every
                # ack it purges the succeeded messages past their retention.
                self.purge_succeeded(now)
                return None
            return m
        m.state, m.updated_at, m.acked_lock = SUCCEEDED, now, lock_id
        m.lock_id = m.lock_deadline = None
        self.succeeded.append(m.id)
        self.totals["acked"] += 1
        self.purge_succeeded(now)
        return None

    def nack(
        self, message_id: str, lock_id: str, now: int, delay_ms: int | None, dead_letter: bool
    ) -> NackOutcome | str:
        m = self.locked(message_id, lock_id, now)
        if isinstance(m, str):
            back = self.given_back(message_id, lock_id, by_nack=True)
            if m == "LockLost" and back is not None:
                # The same lease nacked again changes nothing; it says where
                # the message is now.
                return {DEAD: NackOutcome.DEAD_LETTERED, DELAYED: NackOutcome.DELAYED}.get(
                    back.state, NackOutcome.REQUEUED
                )
            return m
        m.returned = (lock_id, True)
        m.updated_at = now
        m.failure_reason = FailureReason.PROCESSING_ERROR
        self.totals["nacked"] += 1
        if dead_letter:
            return self.to_dead_or_drop(m, now)
        if m.expires_at is not None and m.expires_at <= now:
            self.expire(m, now)
            return NackOutcome.EXPIRED
        if self.exhausted(m):
            return self.to_dead_or_drop(m, now)
        if delay_ms is None:
            delay_ms = retry_delay(self.config.backoff, m.id, m.deliveries)
        self.requeue(m, now + delay_ms, now)
        return NackOutcome.DELAYED if delay_ms else NackOutcome.REQUEUED

    def relock(
        self,
        message_id: str,
        lock_id: str,
        now: int,
        deadline_of: str,
        amount: int,
        from_deadline: int | None = None,
    ) -> int | str:
        m = self.locked(message_id, lock_id, now)
        if isinstance(m, str):
            return m
        if deadline_of == "extend":
            current = m.lock_deadline or 0
            deadline = (current if from_deadline is None else from_deadline) + amount
            if deadline - now > 12 * 3_600_000:
                return "InvalidArgument"
            if from_deadline is not None and deadline <= current:
                return current  # extended this far already: nothing changes
        elif deadline_of == "refresh":
            deadline = now + m.lease_ms
        else:
            m.lease_ms = amount
            deadline = now + amount
        m.lock_deadline, m.updated_at = deadline, now
        return deadline

    def release(self, message_id: str, lock_id: str, now: int, delay_ms: int) -> int | str:
        m = self.locked(message_id, lock_id, now)
        if isinstance(m, str):
            back = self.given_back(message_id, lock_id, by_nack=False)
            if m == "LockLost" and back is not None:
                return back.visible_at  # released again: nothing changes
            return m
        m.returned = (lock_id, False)
        m.updated_at = now
        m.deliveries = max(0, m.deliveries - 1)
        visible_at = now + delay_ms
        if m.expires_at is not None and m.expires_at <= visible_at:
            m.lock_id = m.lock_deadline = None
            self.expire(m, now)
            return visible_at
        self.requeue(m, visible_at, now)
        return m.visible_at

    def redrive(self, message_ids: list[str] | None, now: int) -> int | str:
        targets = self.dead_targets(message_ids)
        if isinstance(targets, str):
            return targets
        for m in targets:
            m.deliveries, m.updated_at, m.dead_at = 0, now, None
            if m.expires_at is not None and m.expires_at <= now:
                m.expires_at = None
            self.requeue(m, now, now)
        return len(targets)

    def purge_dead(self, message_ids: list[str] | None) -> int | str:
        targets = self.dead_targets(message_ids)
        if isinstance(targets, str):
            return targets
        for m in targets:
            del self.messages[m.id]
        return len(targets)

    def dead_targets(self, message_ids: list[str] | None) -> list[ModelMessage] | str:
        if message_ids is None:
            return self.dead_order()
        found = []
        for message_id in message_ids:
            m = self.messages.get(message_id)
            if m is None:
                return "MessageNotFound"
            if m.state is not DEAD:
                return "InvalidState"
            found.append(m)
        return found

    def purge_ready(self) -> int:
        gone = self.in_state(READY) + self.in_state(DELAYED)
        for m in gone:
            del self.messages[m.id]
        return len(gone)
