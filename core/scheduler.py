"""The scheduler seam: which ready message of a queue is dispatched next.

A queue hands every message that becomes ready to its scheduler and asks it
for the next one to dispatch. This module holds the interface and the
strict-priority scheduler (larger priority first, FIFO among equals by the
engine's sequence number); weighted schedulers plug in behind the same
interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from heapq import heapify, heappop, heappush
from typing import Any

from kokaq.core.message import Message

__all__ = ["Scheduler", "SeqQueue", "StrictPriorityScheduler"]


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

    def pop(self) -> Message:
        """Remove the live head; there must be one (``live > 0``)."""
        fifo, late = self.fifo, self.late
        while fifo and fifo[0][1].entry is not fifo[0]:
            fifo.popleft()
        while late and late[0][1].entry is not late[0]:
            heappop(late)
        if late and (not fifo or late[0][0] < fifo[0][0]):
            message = heappop(late)[1]
        else:
            message = fifo.popleft()[1]
        message.entry = None
        self.live -= 1
        return message

    def first(self, count: int) -> list[Message]:
        """The ``count`` first live messages, in order, without removing them."""
        from_fifo = []
        for entry in self.fifo:
            if entry[1].entry is entry:
                from_fifo.append(entry)
                if len(from_fifo) == count:
                    break
        from_late: list[Entry] = []
        late = self.late
        frontier = [(late[0][0], 0)] if late else []
        while frontier and len(from_late) < count:
            _, i = heappop(frontier)
            entry = late[i]
            if entry[1].entry is entry:
                from_late.append(entry)
            for child in (2 * i + 1, 2 * i + 2):
                if child < len(late):
                    heappush(frontier, (late[child][0], child))
        merged = sorted(from_fifo + from_late, key=lambda e: e[0])
        return [e[1] for e in merged[:count]]

    def messages(self) -> list[Message]:
        return [e[1] for e in (*self.fifo, *self.late) if e[1].entry is e]


class StrictPriorityScheduler(Scheduler):
    """Larger priority first; FIFO among equal priorities (by sequence number).

    One ``SeqQueue`` per distinct priority, and a heap of the priorities that
    have one: a dispatch is O(1) within a priority plus O(log priorities) to
    find the top one -- with a handful of priorities, dispatch does not slow
    down as the queue grows.
    """

    __slots__ = ("_levels", "_live", "_order")

    def __init__(self) -> None:
        self._levels: dict[int, SeqQueue] = {}
        self._order: list[int] = []  # -priority of each level; may hold stale ones
        self._live = 0

    def __len__(self) -> int:
        return self._live

    def add(self, message: Message) -> None:
        level = self._levels.get(message.priority)
        if level is None:
            level = self._levels[message.priority] = SeqQueue()
            heappush(self._order, -message.priority)
            if len(self._order) > 2 * len(self._levels) + 64:
                self._order = [-p for p in self._levels]
                heapify(self._order)
        level.add(message)
        self._live += 1

    def remove(self, message: Message) -> None:
        if message.entry is None:
            return
        level = self._levels[message.priority]
        level.forget(message)
        self._live -= 1
        if not level.live:
            del self._levels[message.priority]

    def pop(self) -> Message | None:
        order = self._order
        levels = self._levels
        while order:
            priority = -order[0]
            level = levels.get(priority)
            if level is None:
                heappop(order)
                continue
            message = level.pop()
            self._live -= 1
            if not level.live:
                del levels[priority]
                heappop(order)
            return message
        return None

    def peek(self, count: int) -> list[Message]:
        found: list[Message] = []
        order = self._order
        seen: set[int] = set()
        frontier = [(order[0], 0)] if order else []
        while frontier and len(found) < count:
            negated, i = heappop(frontier)
            level = self._levels.get(-negated)
            if level is not None and negated not in seen:
                seen.add(negated)
                found.extend(level.first(count - len(found)))
            for child in (2 * i + 1, 2 * i + 2):
                if child < len(order):
                    heappush(frontier, (order[child], child))
        return found

    def clear(self) -> list[Message]:
        found = [m for level in self._levels.values() for m in level.messages()]
        for message in found:
            message.entry = None
        self._levels.clear()
        self._order.clear()
        self._live = 0
        return found
