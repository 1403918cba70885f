"""What every group of engine operations shares: the state, the clock, lookups.

``Engine`` (``kokaq.core.engine``) combines the operation groups
(``SchedulingOps``, ``DeadLetterOps`` and its own); each builds on this.
"""

from __future__ import annotations

from collections.abc import Sequence

from kokaq.core.config import HOUR
from kokaq.core.errors import InvalidArgument, NamespaceNotFound, QueueNotFound
from kokaq.core.mixes import QueueMixes
from kokaq.core.namespace import Namespace
from kokaq.core.queue import Queue, SeqCounter
from kokaq.core.validation import check_id, check_name

__all__ = ["MAX_BATCH", "MAX_LEASE_MS", "MAX_TIME", "EngineCore", "id_list", "is_pair"]

#: The most items one enqueue batch, dequeue, peek, page or ack batch may carry.
MAX_BATCH = 1000
MAX_LEASE_MS = 12 * HOUR
MAX_TIME = 2**53  # milliseconds; far beyond any real clock, and JSON-safe


class EngineCore:
    def __init__(self) -> None:
        self._namespaces: dict[str, Namespace] = {}
        self._now = 0
        self._seqs = SeqCounter()  # the last sequence number given to a message
        self._mixes = QueueMixes()  # fair-queueing state of multi-queue dequeues

    # -- time ------------------------------------------------------------------

    def _clock(self, now: int) -> int:
        if type(now) is not int or not 0 <= now <= MAX_TIME:
            raise InvalidArgument("now", f"must be integer milliseconds from 0 to {MAX_TIME}")
        if now > self._now:
            self._now = now
            return now
        return self._now

    @property
    def now(self) -> int:
        """The engine's clock: the largest ``now`` it has been given."""
        return self._now

    # -- lookups -----------------------------------------------------------------

    def _namespace(self, name: str) -> Namespace:
        try:
            return self._namespaces[name]
        except (KeyError, TypeError):
            check_name("namespace", name)
            raise NamespaceNotFound(name) from None

    def _queue(self, namespace: str, queue: str) -> Queue:
        try:
            return self._namespaces[namespace].queues[queue]
        except (KeyError, TypeError):
            self._namespace(namespace)
            check_name("queue", queue)
            raise QueueNotFound(namespace, queue) from None


def is_pair(item: object) -> bool:
    if type(item) is tuple:
        return len(item) == 2
    return isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2


def is_triple(item: object) -> bool:
    return isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3


def id_list(message_ids: Sequence[str] | None) -> list[str] | None:
    if message_ids is None:
        return None
    if isinstance(message_ids, str) or not isinstance(message_ids, Sequence):
        raise InvalidArgument("message_ids", "must be a list of message ids")
    if len(message_ids) > 10 * MAX_BATCH:
        raise InvalidArgument("message_ids", f"must hold at most {10 * MAX_BATCH} ids")
    return [check_id(f"message_ids[{i}]", m) for i, m in enumerate(message_ids)]
