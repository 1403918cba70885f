"""The scheduler seam: which ready message of a queue is dispatched next.

A queue hands every message that becomes ready to its scheduler and asks it
for the next one to dispatch. This module holds the interface and the
strict-priority scheduler (larger priority first, FIFO among equals by the
engine's sequence number); weighted schedulers plug in behind the same
interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from kokaq.core.indexes import LazyHeap
from kokaq.core.message import Message
from kokaq.core.validation import MAX_PRIORITY

__all__ = ["Scheduler", "StrictPriorityScheduler"]


class Scheduler(ABC):
    """Holds a queue's ready messages and decides their dispatch order.

    Implementations must be deterministic: the same calls in the same order
    give the same choices, and ``export_state`` / ``import_state`` carry
    whatever besides the messages themselves decides future choices.
    """

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


class StrictPriorityScheduler(Scheduler):
    """Larger priority first; FIFO among equal priorities."""

    __slots__ = ("_heap",)

    def __init__(self) -> None:
        self._heap = LazyHeap("entry")

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, message: Message) -> None:
        # One integer key: inverted priority in the high bits, seq in the low.
        self._heap.push(((MAX_PRIORITY - message.priority) << 64) | message.seq, message)

    def remove(self, message: Message) -> None:
        self._heap.discard(message)

    def pop(self) -> Message | None:
        return self._heap.pop()

    def peek(self, count: int) -> list[Message]:
        return self._heap.first(count)

    def clear(self) -> list[Message]:
        return self._heap.clear()
