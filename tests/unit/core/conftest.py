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


#: Fields of a message in a snapshot of this build (core/snapshot.py).
MESSAGE_FIELDS = 24


def older_snapshot(snapshot: bytes, message_id: str, fields: int) -> bytes:
    """``snapshot`` as an older build wrote it: message ``message_id`` cut to
    its first ``fields`` fields (the later ones did not exist then)."""
    import msgpack  # noqa: PLC0415

    def cut(node: object) -> object:
        if isinstance(node, list):
            if len(node) == MESSAGE_FIELDS and node[0] == message_id:
                return node[:fields]
            return [cut(item) for item in node]
        if isinstance(node, dict):
            return {key: cut(value) for key, value in node.items()}
        return node

    old = msgpack.packb(cut(msgpack.unpackb(snapshot, strict_map_key=False)))
    assert len(old) < len(snapshot)  # the fields were there, and are gone
    return bytes(old)


@pytest.fixture
def h() -> Iterator[Harness]:
    yield Harness()


@pytest.fixture
def make_harness() -> Any:
    return Harness
