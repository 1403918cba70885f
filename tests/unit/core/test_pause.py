"""A paused queue dispatches nothing until it is resumed; everything else
goes on (enqueues, peeks, settles, timers), and a weighted dequeue serves
the other queues of its mix."""

from __future__ import annotations

import msgpack
import pytest

from kokaq.core import Engine, FailureReason, MessageState, QueueConfig, QueueNotFound
from tests.unit.core.conftest import Harness


def pause(h: Harness) -> None:
    h.engine.pause_queue("ns", "q", now=h.now)


def test_a_paused_queue_dispatches_nothing_and_resumes_in_order(h: Harness) -> None:
    first = h.put(priority=1)
    h.advance(10)
    info = h.engine.pause_queue("ns", "q", now=h.now)
    assert info.paused_at == h.now and info.updated_at == h.now
    assert h.stats().paused
    second = h.put(priority=5)  # enqueues go on
    assert h.take(10) == []
    assert [m.id for m in h.engine.peek("ns", "q", now=h.now, count=5)] == [
        second.message_id,
        first.message_id,
    ]
    assert h.stats().ready == 2
    h.advance(10)
    again = h.engine.pause_queue("ns", "q", now=h.now)  # pausing twice changes nothing
    assert again.paused_at == info.paused_at and again.updated_at == info.updated_at
    resumed = h.engine.resume_queue("ns", "q", now=h.now)
    assert resumed.paused_at is None and not h.stats().paused
    assert [m.id for m in h.take(10)] == [second.message_id, first.message_id]
    assert h.engine.resume_queue("ns", "q", now=h.now).paused_at is None  # running: no change


def test_leases_held_settle_and_timers_run_while_paused() -> None:
    h = Harness(QueueConfig(visibility_timeout_ms=1_000))
    h.put()
    h.put()
    acked, expiring = h.take(2)
    h.put(delay_ms=500)
    pause(h)
    h.engine.ack("ns", "q", acked.id, acked.lock_id or "", now=h.now)
    h.advance(1_500)
    h.engine.tick(h.now)
    stats = h.stats()
    assert (stats.leased, stats.delayed, stats.ready, stats.succeeded) == (0, 0, 2, 1)
    assert h.get(expiring.id).state is MessageState.READY  # its lease ran out: back, not leased
    assert h.take(2) == []
    h.engine.resume_queue("ns", "q", now=h.now)
    retried = h.take_one()
    h.engine.nack(
        "ns", "q", retried.id, retried.lock_id or "", now=h.now,
        reason=FailureReason.PROCESSING_ERROR, delay_ms=0,
    )  # fmt: skip
    assert h.stats().ready == 2


def test_a_weighted_dequeue_serves_the_queues_that_are_not_paused(h: Harness) -> None:
    h.engine.create_queue("ns", "other", now=h.now)
    for i in range(3):
        h.put()
        h.engine.enqueue("ns", "other", b"o", message_id=f"o{i}", now=h.now)
    pause(h)
    mix = [("q", 5), ("other", 1)]
    leased = h.engine.dequeue_weighted("ns", mix, lock_id="L1", now=h.now, max_count=6)
    assert sorted(m.id for m in leased) == ["o0", "o1", "o2"]
    assert h.engine.dequeue_weighted("ns", mix, lock_id="L2", now=h.now, max_count=6) == []
    h.engine.resume_queue("ns", "q", now=h.now)
    leased = h.engine.dequeue_weighted("ns", mix, lock_id="L3", now=h.now, max_count=6)
    assert sorted(m.id for m in leased) == ["m1", "m2", "m3"]


def test_pausing_survives_a_snapshot_and_running_queues_keep_their_old_record(h: Harness) -> None:
    h.put()
    running = h.engine.snapshot()
    (namespace,) = msgpack.unpackb(running, strict_map_key=False)["namespaces"]
    assert [len(queue) for queue in namespace[-1]] == [10]  # as the builds before pausing wrote
    pause(h)
    restored = Engine.restore(h.engine.snapshot())
    assert restored.get_queue("ns", "q").paused_at == h.now
    assert restored.dequeue("ns", "q", lock_id="L9", now=h.now) == []
    restored.resume_queue("ns", "q", now=h.now)
    assert len(restored.dequeue("ns", "q", lock_id="L9", now=h.now)) == 1
    assert Engine.restore(running).get_queue("ns", "q").paused_at is None


def test_pausing_a_missing_queue_is_refused(h: Harness) -> None:
    with pytest.raises(QueueNotFound):
        h.engine.pause_queue("ns", "nope", now=h.now)
    with pytest.raises(QueueNotFound):
        h.engine.resume_queue("ns", "nope", now=h.now)
    assert not h.stats().paused
