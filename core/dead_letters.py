"""Engine operations on the dead-letter queue: list, redrive, purge."""

from __future__ import annotations

from collections.abc import Sequence

from kokaq.core.engine_core import MAX_BATCH, EngineCore, id_list
from kokaq.core.results import DeadPage
from kokaq.core.validation import check_int

__all__ = ["DeadLetterOps"]


class DeadLetterOps(EngineCore):
    def list_dead(
        self, namespace: str, queue: str, *, limit: int = 100, after: int | None = None
    ) -> DeadPage:
        """A page of the DLQ, oldest death first; pass ``next_cursor`` as ``after``."""
        q = self._queue(namespace, queue)
        check_int("limit", limit, 1, MAX_BATCH)
        if after is not None:
            check_int("after", after, 0, 2**128)
        found, cursor = q.dead_page(after, limit)
        return DeadPage([q.view(m) for m in found], cursor)

    def redrive(
        self, namespace: str, queue: str, *, now: int, message_ids: Sequence[str] | None = None
    ) -> int:
        """Move dead messages (all, or those named) back to ready with their
        priority, fairness key and original enqueue time; deliveries restart at 0.
        """
        now = self._clock(now)
        q = self._queue(namespace, queue)
        return q.redrive(q.dead_messages(id_list(message_ids)), now)

    def purge_dead(
        self, namespace: str, queue: str, *, now: int, message_ids: Sequence[str] | None = None
    ) -> int:
        """Delete dead messages (all, or those named)."""
        self._clock(now)
        q = self._queue(namespace, queue)
        return q.purge_dead(q.dead_messages(id_list(message_ids)))
