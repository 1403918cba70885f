"""Engine operations of weighted scheduling: multi-queue dequeue,
reprioritizing, and explaining the scheduler's choices."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from kokaq.core.config import MAX_WEIGHT, SECOND
from kokaq.core.engine_core import MAX_BATCH, MAX_LEASE_MS, EngineCore, is_pair
from kokaq.core.errors import InvalidArgument, InvalidState
from kokaq.core.filters import MessageFilter
from kokaq.core.message import MessageState, MessageView
from kokaq.core.queue import Transitions
from kokaq.core.results import Explanation, SchedulingStats
from kokaq.core.validation import check_id, check_int, check_name

__all__ = ["MAX_MIX", "SchedulingOps"]

#: The most queues one weighted dequeue may name.
MAX_MIX = 32


class SchedulingOps(EngineCore):
    def dequeue_weighted(
        self,
        namespace: str,
        queues: Sequence[tuple[str, int]],
        *,
        lock_id: str,
        now: int,
        max_count: int = 1,
        visibility_timeout_ms: int | None = None,
    ) -> list[MessageView]:
        """Lease up to ``max_count`` messages from several queues of a namespace,
        given as ``(queue, weight)`` pairs: the queue that serves each message is
        chosen by weighted fair queueing, fair across calls with the same mix.
        Each lease lasts its queue's visibility timeout unless one is given.
        """
        now = self._clock(now)
        ns = self._namespace(namespace)
        mix_key = (namespace, _queue_weights(queues))
        chosen = {name: self._queue(namespace, name) for name, _ in mix_key[1]}
        check_id("lock_id", lock_id)
        check_int("max_count", max_count, 1, MAX_BATCH)
        if visibility_timeout_ms is not None:
            check_int("visibility_timeout_ms", visibility_timeout_ms, SECOND, MAX_LEASE_MS)
        for q in chosen.values():
            q.apply_due(now, Transitions())
        mix = self._mixes.get(mix_key)
        mix.sync({name: len(q.scheduler) > 0 and q.paused_at is None for name, q in chosen.items()})
        level = mix.level
        leased: list[MessageView] = []
        while len(leased) < max_count and len(level):
            member = level.select()
            q = ns.queues[member.name]  # type: ignore[index]
            lease_ms = visibility_timeout_ms or q.config.visibility_timeout_ms
            (message,) = q.lease(1, lock_id, lease_ms, now)
            leased.append(q.view(message))
            level.charge(member, message.cost, 1 if len(q.scheduler) else None)
        return leased

    def reprioritize(
        self,
        namespace: str,
        queue: str,
        priority: int,
        *,
        now: int,
        message_id: str | None = None,
        where: MessageFilter | None = None,
    ) -> int:
        """Give one message (by id, in any state but succeeded) or every message
        matching ``where`` a new priority, atomically; returns how many changed.
        A ready message moves to its new place at once.
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        check_int("priority", priority, q.config.min_priority, q.config.max_priority)
        if (message_id is None) == (where is None):
            raise InvalidArgument("message_id", "give message_id or where, not both")
        if message_id is not None:
            message = q.get(check_id("message_id", message_id))
            if message.state is MessageState.SUCCEEDED:
                raise InvalidState(
                    message_id, message.state.value, "ready, delayed, leased or dead"
                )
            return q.reprioritize([message], priority)
        if not isinstance(where, MessageFilter):
            raise InvalidArgument("where", "must be a MessageFilter")
        where.validate("where")
        return q.reprioritize([m for m in q.messages.values() if where.matches(m)], priority)

    def explain(self, namespace: str, queue: str, message_id: str) -> Explanation:
        """Where a message stands in the scheduler, and why; a read.

        For a ready message this counts the messages ahead of it by replaying
        the scheduler's choices, so it costs O(n log n): a diagnostic.
        """
        q = self._queue(namespace, queue)
        message = q.get(check_id("message_id", message_id))
        band, band_weight, key_weight, rank = q.scheduler.classify(message)
        interval = q.config.scheduling.aging_interval_ms
        waited = max(0, self._now - message.created_at)
        effective = message.priority + (waited // interval if interval else 0)
        explained = Explanation(
            message.id,
            message.state,
            message.priority,
            effective,
            band,
            band_weight,
            message.fairness_key,
            key_weight,
            rank,
        )
        if message.state is not MessageState.READY:
            return explained
        place = q.scheduler.place(message)
        return dataclasses.replace(
            explained,
            band_start=place.band_start,
            band_vtime=place.band_vtime,
            key_start=place.key_start,
            key_vtime=place.key_vtime,
            ahead=place.ahead,
        )

    def scheduling_stats(
        self, namespace: str, queue: str, *, key_limit: int = 100
    ) -> SchedulingStats:
        """Dispatches and cost per band and per active fairness key (the
        ``key_limit`` most served), with achieved against configured shares."""
        q = self._queue(namespace, queue)
        check_int("key_limit", key_limit, 1, MAX_BATCH)
        return SchedulingStats(q.scheduler.band_shares(), q.scheduler.key_shares(key_limit))


def _queue_weights(queues: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    if isinstance(queues, str) or not isinstance(queues, Sequence) or not queues:
        raise InvalidArgument("queues", "must be a list of (queue, weight) pairs")
    if len(queues) > MAX_MIX:
        raise InvalidArgument("queues", f"must name at most {MAX_MIX} queues")
    pairs: list[tuple[str, int]] = []
    for index, pair in enumerate(queues):
        if not is_pair(pair):
            raise InvalidArgument(f"queues[{index}]", "must be a (queue, weight) pair")
        name, weight = pair
        check_name(f"queues[{index}].queue", name)
        check_int(f"queues[{index}].weight", weight, 1, MAX_WEIGHT)
        if any(name == earlier for earlier, _ in pairs):
            raise InvalidArgument(f"queues[{index}].queue", f"names {name!r} twice")
        pairs.append((name, weight))
    return tuple(pairs)
