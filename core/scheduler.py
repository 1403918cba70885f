"""The scheduler seam, and the orders messages wait in inside one flow.

A queue hands every message that becomes ready to its scheduler and asks it
for the next one to dispatch (``Scheduler``; the weighted implementation is
in ``kokaq.core.weighted``). Inside one flow -- one (band, fairness key) --
messages wait in rank order, larger rank first and FIFO among equals by the
engine's sequence number:

* ``PriorityLevels``: rank = priority. One ``SeqQueue`` per distinct
  priority: O(1) per message within a priority, O(log priorities) to find
  the top one, so dispatch does not slow down as the queue grows.
* ``AgedOrder``: rank = priority * tau - first enqueue time (linear aging).
  The key is static, so nothing is re-sorted as time passes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from heapq import heapify, heappop, heappush
from typing import Any

from kokaq.core.message import Message

__all__ = ["AgedOrder", "FlowOrder", "PriorityLevels", "Scheduler", "SeqQueue", "rank"]


class Scheduler(ABC):
    """Holds a queue's ready messages and decides their dispatch order.

    Implementations must be deterministic: the same calls in the same order
    give the same choices, and ``export_state`` / ``import_state`` carry
    whatever besides the messages themselves decides future choices.
    """

    __slots__ = ()

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def add(self, message: Message) -> None:
        """``message`` became ready."""

    @abstractmethod
    def remove(self, message: Message) -> None:
        """``message`` stopped being ready without being dispatched."""

    @abstractmethod
    def pop(self) -> Message | None:
        """Dispatch: remove and return the next message, or None if empty."""

    @abstractmethod
    def peek(self, count: int) -> list[Message]:
        """The next ``count`` messages in dispatch order, without removing them."""

    @abstractmethod
    def ahead_of(self, message: Message) -> int:
        """How many ready messages would be dispatched before ``message`` (O(n))."""

    @abstractmethod
    def clear(self) -> list[Message]:
        """Remove every message; return them in no particular order."""

    def export_state(self) -> Any:
        """Scheduler state beyond the messages (msgpack-able)."""
        return None

    def import_state(self, state: Any) -> None:  # noqa: B027 (optional hook)
        """Restore what ``export_state`` returned (after the messages are re-added)."""


Entry = tuple[int, Message]


class SeqQueue:
    """Messages in sequence order, O(1) for the usual case.

    New messages arrive with ever larger sequence numbers, so they are simply
    appended to ``fifo``; only a message that comes back (a retry, a redrive,
    a delayed message whose turn came) goes into the ``late`` heap. The head
    is the smaller of the two heads. Entries are ``(seq, message)`` tuples and
    the message's ``entry`` slot names its live one: any other is stale and
    skipped (lazy deletion), and stale entries never outnumber live ones by
    much (``compact``).
    """

    __slots__ = ("fifo", "last_seq", "late", "live")

    def __init__(self) -> None:
        self.fifo: deque[Entry] = deque()
        self.late: list[Entry] = []
        self.last_seq = -1
        self.live = 0

    def add(self, message: Message) -> None:
        entry = (message.seq, message)
        message.entry = entry
        if message.seq > self.last_seq:
            self.fifo.append(entry)
            self.last_seq = message.seq
        else:
            heappush(self.late, entry)
        self.live += 1

    def forget(self, message: Message) -> None:
        """Make ``message``'s entry stale (the caller knows it is live here)."""
        message.entry = None
        self.live -= 1
        if len(self.fifo) + len(self.late) > 2 * self.live + 32:
            self.compact()

    def compact(self) -> None:
        self.fifo = deque(e for e in self.fifo if e[1].entry is e)
        self.late = [e for e in self.late if e[1].entry is e]
        heapify(self.late)

    def _head_is_late(self) -> bool:
        """Drop stale entries off both heads; True when the live head is in ``late``."""
        fifo, late = self.fifo, self.late
        while fifo and fifo[0][1].entry is not fifo[0]:
            fifo.popleft()
        while late and late[0][1].entry is not late[0]:
            heappop(late)
        return bool(late) and (not fifo or late[0][0] < fifo[0][0])

    def pop(self) -> Message:
        """Remove the live head; there must be one (``live > 0``)."""
        message = heappop(self.late)[1] if self._head_is_late() else self.fifo.popleft()[1]
        message.entry = None
        self.live -= 1
        return message

    def head(self) -> Message:
        """The live head, left in place; there must be one."""
        return self.late[0][1] if self._head_is_late() else self.fifo[0][1]

    def messages(self) -> list[Message]:
        return [e[1] for e in (*self.fifo, *self.late) if e[1].entry is e]


def rank(message: Message, aging_interval_ms: int | None) -> int:
    """A message's static ordering key inside its flow, larger first: its
    priority, or with aging ``priority * interval - first enqueue time``."""
    if aging_interval_ms is None:
        return message.priority
    return message.priority * aging_interval_ms - message.created_at


class FlowOrder(ABC):
    """The messages of one flow in rank order (the ``live`` count is public)."""

    __slots__ = ("live",)

    def __init__(self) -> None:
        self.live = 0

    @abstractmethod
    def add(self, message: Message) -> None: ...

    @abstractmethod
    def forget(self, message: Message) -> None:
        """Remove ``message``, which the caller knows is live here."""

    @abstractmethod
    def pop(self) -> Message:
        """Remove and return the head; there must be one."""

    @abstractmethod
    def head(self) -> Message:
        """The head, left in place; there must be one."""

    @abstractmethod
    def messages(self) -> list[Message]:
        """Every live message, in no particular order."""


class PriorityLevels(FlowOrder):
    """Rank = priority: a ``SeqQueue`` per distinct priority, and a heap of
    the negated priorities that have one (possibly stale, skipped lazily)."""

    __slots__ = ("_levels", "_order")

    def __init__(self) -> None:
        super().__init__()
        self._levels: dict[int, SeqQueue] = {}
        self._order: list[int] = []

    def add(self, message: Message) -> None:
        level = self._levels.get(message.priority)
        if level is None:
            level = self._levels[message.priority] = SeqQueue()
            heappush(self._order, -message.priority)
            if len(self._order) > 2 * len(self._levels) + 64:
                self._order = [-p for p in self._levels]
                heapify(self._order)
        level.add(message)
        self.live += 1

    def forget(self, message: Message) -> None:
        level = self._levels[message.priority]
        level.forget(message)
        self.live -= 1
        if not level.live:
            del self._levels[message.priority]

    def _top(self) -> SeqQueue:
        order, levels = self._order, self._levels
        while -order[0] not in levels:
            heappop(order)
        return levels[-order[0]]

    def pop(self) -> Message:
        level = self._top()
        message = level.pop()
        self.live -= 1
        if not level.live:
            del self._levels[-heappop(self._order)]
        return message

    def head(self) -> Message:
        return self._top().head()

    def messages(self) -> list[Message]:
        return [m for level in self._levels.values() for m in level.messages()]


class AgedOrder(FlowOrder):
    """Rank = priority * interval - first enqueue time: waiting one interval is
    worth one priority point, and the key never changes while it waits."""

    __slots__ = ("_heap", "_interval")

    def __init__(self, interval_ms: int) -> None:
        super().__init__()
        self._interval = interval_ms
        self._heap: list[tuple[int, int, Message]] = []

    def add(self, message: Message) -> None:
        entry = (-rank(message, self._interval), message.seq, message)
        message.entry = entry
        heappush(self._heap, entry)
        self.live += 1

    def forget(self, message: Message) -> None:
        message.entry = None
        self.live -= 1
        if len(self._heap) > 2 * self.live + 32:
            self._heap = [e for e in self._heap if e[2].entry is e]
            heapify(self._heap)

    def head(self) -> Message:
        heap = self._heap
        while heap[0][2].entry is not heap[0]:
            heappop(heap)
        return heap[0][2]

    def pop(self) -> Message:
        message = self.head()
        heappop(self._heap)
        message.entry = None
        self.live -= 1
        return message

    def messages(self) -> list[Message]:
        return [e[2] for e in self._heap if e[2].entry is e]
