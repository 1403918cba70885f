from __future__ import annotations

from typing import Any

import pytest

from kokaq.core import (
    Engine,
    Headers,
    InvalidArgument,
    QueueConfig,
    RetentionPolicy,
    TickReport,
)

from .conftest import Harness


def test_tick_reports_each_transition_and_next_due(make_harness: Any) -> None:
    h = make_harness(QueueConfig(retention=RetentionPolicy(period_ms=500)))
    h.put(delay_ms=100)
    h.put()
    h.put(ttl_ms=200)
    leased = h.take_one(visibility_timeout_ms=1_000)
    h.engine.ack("ns", "q", leased.id, leased.lock_id or "", now=h.now)
    assert h.engine.next_due() == h.now + 100
    assert h.engine.tick(h.now) == TickReport(next_due=h.now + 100)
    h.advance(100)
    assert h.engine.tick(h.now) == TickReport(
        promoted=1, queues=(("ns", "q"),), next_due=h.now + 100
    )
    h.advance(100)
    report = h.engine.tick(h.now)
    assert (report.expired, report.dead_lettered) == (1, 1)
    h.advance(300)
    assert h.engine.tick(h.now).purged == 1
    # What is left: m1 ready, m3 dead -- nothing is due any more.
    assert h.engine.next_due() is None


def test_tick_rejects_bad_time() -> None:
    with pytest.raises(InvalidArgument):
        Engine().tick(-5)


def busy_engine() -> Harness:
    h = Harness(QueueConfig(max_deliveries=3, default_ttl_ms=50_000))
    h.engine.create_namespace("other", now=h.now)
    h.engine.create_queue("other", "empty", now=h.now)
    headers = Headers(content_type="text/plain", type="job", user={"a": "b"})
    for i in range(12):
        h.put(bytes([i]), priority=i % 3, headers=headers if i % 2 else None, dedup_key=f"d{i}")
    h.put(delay_ms=700)
    first, second, third, fourth = h.take(4)
    h.engine.ack("ns", "q", first.id, first.lock_id or "", now=h.now)
    h.engine.nack("ns", "q", second.id, second.lock_id or "", now=h.now, error="e")
    h.engine.nack("ns", "q", third.id, third.lock_id or "", now=h.now, dead_letter=True)
    h.engine.extend("ns", "q", fourth.id, fourth.lock_id or "", add_ms=10, now=h.now)
    h.advance(5)
    return h


def test_snapshot_restores_an_identical_engine() -> None:
    h = busy_engine()
    data = h.engine.snapshot()
    restored = Engine.restore(data)
    assert restored.snapshot() == data
    assert restored.now == h.engine.now
    assert restored.list_namespaces() == h.engine.list_namespaces()
    assert restored.stats("ns", "q", now=h.now) == h.engine.stats("ns", "q", now=h.now)
    # Both go on identically.
    for engine in (h.engine, restored):
        engine.enqueue("ns", "q", b"new", message_id="new", now=h.now + 1, priority=2)
    assert h.engine.dequeue("ns", "q", lock_id="X", now=h.now + 2, max_count=20) == (
        restored.dequeue("ns", "q", lock_id="X", now=h.now + 2, max_count=20)
    )
    for at in (h.now + 1_000, h.now + 40_000, h.now + 60_000):
        assert h.engine.tick(at) == restored.tick(at)
    assert h.engine.snapshot() == restored.snapshot()
    # Dedup state came along.
    assert restored.enqueue("ns", "q", b"", message_id="zz", now=h.now + 61_000, dedup_key="d1")


def test_restore_rejects_garbage() -> None:
    for data in (b"", b"\x93\x01\x02", b"not msgpack at all \xc1"):
        with pytest.raises(InvalidArgument) as raised:
            Engine.restore(data)
        assert raised.value.field == "snapshot"
