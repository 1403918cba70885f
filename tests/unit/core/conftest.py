from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from kokaq.core import Engine, EnqueueResult, MessageView, QueueConfig


class Harness:
    """An engine with namespace ``ns`` and queue ``q``, a clock, and id counters."""

    def __init__(self, config: QueueConfig | None = None) -> None:
        self.now = 1_000
        self.engine = Engine()
        self.engine.create_namespace("ns", now=self.now)
        self.engine.create_queue("ns", "q", config, now=self.now)
        self._ids = itertools.count(1)
        self._locks = itertools.count(1)

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now

    def put(self, payload: bytes = b"x", **fields: Any) -> EnqueueResult:
        return self.engine.enqueue(
            "ns", "q", payload, message_id=f"m{next(self._ids)}", now=self.now, **fields
        )

    def take(self, count: int = 1, **fields: Any) -> list[MessageView]:
        return self.engine.dequeue(
            "ns", "q", lock_id=f"L{next(self._locks)}", now=self.now, max_count=count, **fields
        )

    def take_one(self, **fields: Any) -> MessageView:
        (message,) = self.take(1, **fields)
        return message

    def get(self, message_id: str) -> MessageView:
        return self.engine.get_message("ns", "q", message_id)

    def stats(self) -> Any:
        return self.engine.stats("ns", "q", now=self.now)


@pytest.fixture
def h() -> Iterator[Harness]:
    yield Harness()


@pytest.fixture
def make_harness() -> Any:
    return Harness
