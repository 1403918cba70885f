"""Ordered indexes over messages: binary heaps with lazy deletion.

An entry is a ``(key, message)`` tuple with a unique integer key, so payloads
are never compared. The message remembers its current entry in one of its
slots (``entry`` or ``ttl_entry``); an entry that is not the message's current
one is stale and skipped. Removing a message is therefore O(1) (forget the
entry), and stale entries are dropped when they reach the top or when they
outnumber live ones (an O(n) rebuild, amortised O(1) per removal).
"""

from __future__ import annotations

from collections import deque
from heapq import heapify, heappop, heappush
from operator import attrgetter
from typing import Any

from kokaq.core.message import Message

__all__ = ["LazyHeap", "OldestIndex", "deadline_key"]

_SHIFT = 64


def deadline_key(deadline: int, seq: int) -> int:
    """A unique key ordering by deadline, then by message sequence."""
    return (deadline << _SHIFT) | seq


class LazyHeap:
    """A min-heap of messages by key; each message sits in it at most once."""

    __slots__ = ("_current", "_heap", "_live", "_slot")

    def __init__(self, slot: str = "entry") -> None:
        self._heap: list[tuple[int, Message]] = []
        self._live = 0
        self._slot = slot
        self._current = attrgetter(slot)

    def __len__(self) -> int:
        return self._live

    def push(self, key: int, message: Message) -> None:
        entry = (key, message)
        setattr(message, self._slot, entry)
        heappush(self._heap, entry)
        self._live += 1

    def discard(self, message: Message) -> None:
        """Forget ``message`` if it is in this heap (its entry goes stale)."""
        if self._current(message) is None:
            return
        setattr(message, self._slot, None)
        self._live -= 1
        heap = self._heap
        if len(heap) > 2 * self._live + 32:
            current = self._current
            self._heap = [e for e in heap if current(e[1]) is e]
            heapify(self._heap)

    def _clean_top(self) -> None:
        heap = self._heap
        current = self._current
        while heap and current(heap[0][1]) is not heap[0]:
            heappop(heap)

    def min_key(self) -> int | None:
        self._clean_top()
        return self._heap[0][0] if self._heap else None

    def pop(self) -> Message | None:
        """Remove and return the message with the smallest key."""
        heap = self._heap
        current = self._current
        while heap:
            entry = heappop(heap)
            message = entry[1]
            if current(message) is entry:
                setattr(message, self._slot, None)
                self._live -= 1
                return message
        return None

    def pop_below(self, limit: int) -> Message | None:
        """Like ``pop``, but only a message whose key is below ``limit``."""
        self._clean_top()
        heap = self._heap
        if not heap or heap[0][0] >= limit:
            return None
        return self.pop()

    def messages(self) -> list[Message]:
        """Every live message, in no particular order."""
        current = self._current
        return [e[1] for e in self._heap if current(e[1]) is e]

    def clear(self) -> list[Message]:
        """Remove every message and return them, in no particular order."""
        found = self.messages()
        for message in found:
            setattr(message, self._slot, None)
        self._heap = []
        self._live = 0
        return found


class OldestIndex:
    """The oldest message in a state, by sequence number (for "age of oldest ready").

    Like ``SeqQueue``: new messages are appended to a FIFO (8 bytes each),
    returning ones go to a small heap. An entry is live while its message is
    in ``state``; a message that leaves and comes back may leave a duplicate,
    which is harmless (only the head is read) and swept when stale entries
    outnumber live ones.
    """

    __slots__ = ("_fifo", "_last_seq", "_late", "_live", "_state")

    def __init__(self, state: Any) -> None:
        self._fifo: deque[Message] = deque()
        self._late: list[tuple[int, Message]] = []
        self._last_seq = -1
        self._live = 0
        self._state = state

    def add(self, message: Message) -> None:
        if message.seq > self._last_seq:
            self._fifo.append(message)
            self._last_seq = message.seq
        else:
            heappush(self._late, (message.seq, message))
        self._live += 1

    def removed_many(self, count: int) -> None:
        """Note that ``count`` messages left the state."""
        self._live -= count
        if len(self._fifo) + len(self._late) > 2 * self._live + 1024:
            state = self._state
            self._fifo = deque(m for m in self._fifo if m.state is state)
            unique = {id(e[1]): e for e in self._late if e[1].state is state}
            self._late = list(unique.values())
            heapify(self._late)

    def clear(self) -> None:
        self._fifo.clear()
        self._late = []
        self._live = 0

    def oldest(self) -> Message | None:
        fifo, late, state = self._fifo, self._late, self._state
        while fifo and fifo[0].state is not state:
            fifo.popleft()
        while late and late[0][1].state is not state:
            heappop(late)
        if late and (not fifo or late[0][0] < fifo[0].seq):
            return late[0][1]
        return fifo[0] if fifo else None
