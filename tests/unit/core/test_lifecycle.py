from __future__ import annotations

from typing import Any

import pytest

from kokaq.core import (
    BackoffPolicy,
    Engine,
    FailureReason,
    InvalidArgument,
    LockLost,
    MessageNotFound,
    MessageState,
    NackOutcome,
    QueueConfig,
    RetentionPolicy,
)

from .conftest import Harness


def test_dequeue_is_strict_priority_then_fifo(h: Harness) -> None:
    for priority in [1, 5, 1, 9, 5]:
        h.put(priority=priority)
    taken = h.take(10)
    assert [(m.id, m.priority) for m in taken] == [
        ("m4", 9),
        ("m2", 5),
        ("m5", 5),
        ("m1", 1),
        ("m3", 1),
    ]


def test_dequeue_leases_with_lock_and_deadline(h: Harness) -> None:
    h.put()
    h.put()
    first, second = h.take(2)
    assert first.state is MessageState.LEASED
    assert first.lock_id == second.lock_id == "L1"
    assert first.lock_deadline == h.now + 30_000
    assert first.deliveries == 1
    assert h.take() == []
    h.put()
    assert h.take_one(visibility_timeout_ms=1_000).lock_deadline == h.now + 1_000
    stats = h.stats()
    assert (stats.ready, stats.leased, stats.totals["dequeued"]) == (0, 3, 3)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_count": 0}, "max_count"),
        ({"max_count": 1001}, "max_count"),
        ({"visibility_timeout_ms": 999}, "visibility_timeout_ms"),
        ({"visibility_timeout_ms": 12 * 3_600_000 + 1}, "visibility_timeout_ms"),
        ({"lock_id": "bad lock"}, "lock_id"),
    ],
)
def test_dequeue_bad_input(h: Harness, fields: dict[str, Any], field: str) -> None:
    h.put()
    before = h.engine.snapshot()
    args: dict[str, Any] = {"lock_id": "L", "now": h.now} | fields
    with pytest.raises(InvalidArgument) as raised:
        h.engine.dequeue("ns", "q", **args)
    assert raised.value.field == field
    assert h.engine.snapshot() == before


def test_ack_settles_once_and_a_repeated_ack_of_the_same_lease_changes_nothing(
    h: Harness,
) -> None:
    h.put()
    message = h.take_one()
    h.engine.ack("ns", "q", message.id, "L1", now=h.now)
    view = h.get(message.id)
    assert (view.state, view.lock_id, view.updated_at) == (MessageState.SUCCEEDED, None, h.now)
    after_first = h.engine.snapshot()
    # The client lost the answer (a failover) and retries: the same lease, again.
    h.now += 1_000
    h.engine.ack("ns", "q", message.id, "L1", now=h.now)
    assert h.engine.ack_batch("ns", "q", [(message.id, "L1")], now=h.now) == [None]
    restored = Engine.restore(after_first)
    restored.ack("ns", "q", message.id, "L1", now=h.now)  # the lock survives a snapshot
    assert restored.stats("ns", "q", now=h.now).totals["acked"] == 1
    # Another lock id is still refused.
    with pytest.raises(LockLost):
        h.engine.ack("ns", "q", message.id, "L2", now=h.now)
    (other,) = h.engine.ack_batch("ns", "q", [(message.id, "L2")], now=h.now)
    assert isinstance(other, LockLost)
    stats = h.stats()
    assert (stats.succeeded, stats.leased, stats.totals["acked"]) == (1, 0, 1)
    assert h.get(message.id).updated_at == view.updated_at


def test_a_repeated_nack_or_release_of_the_same_lease_answers_and_changes_nothing(
    h: Harness,
) -> None:
    h.put()
    h.put()
    nacked, released = h.take(2)
    first = h.engine.nack("ns", "q", nacked.id, nacked.lock_id or "", now=h.now, delay_ms=500)
    visible = h.engine.release("ns", "q", released.id, released.lock_id or "", now=h.now)
    assert first.outcome is NackOutcome.DELAYED and visible == h.now
    after_first = h.engine.snapshot()
    views, totals = [h.get(m.id) for m in (nacked, released)], h.stats().totals
    # The client lost the answers (a failover) and retries: the same leases, again.
    h.now += 100
    for engine in (h.engine, Engine.restore(after_first)):  # the memory survives a snapshot
        again = engine.nack("ns", "q", nacked.id, nacked.lock_id or "", now=h.now, delay_ms=9)
        assert again == first
        assert engine.release("ns", "q", released.id, released.lock_id or "", now=h.now) == visible
        # A nack's lock cannot release, nor a release's nack, nor another lock settle.
        with pytest.raises(LockLost):
            engine.release("ns", "q", nacked.id, nacked.lock_id or "", now=h.now)
        with pytest.raises(LockLost):
            engine.nack("ns", "q", released.id, released.lock_id or "", now=h.now)
        with pytest.raises(LockLost):
            engine.nack("ns", "q", nacked.id, "L99", now=h.now)
        # A repeat is still checked like any call: bad input is refused first.
        with pytest.raises(InvalidArgument) as bad:
            engine.nack("ns", "q", nacked.id, nacked.lock_id or "", now=h.now, delay_ms=-1)
        assert bad.value.field == "delay_ms"
        with pytest.raises(InvalidArgument) as bad:
            engine.release("ns", "q", released.id, released.lock_id or "", now=h.now, delay_ms=-1)
        assert bad.value.field == "delay_ms"
    # Nothing changed, not even a counter.
    assert [h.get(m.id) for m in (nacked, released)] == views
    assert h.stats().totals == totals and totals["nacked"] == 1

    # Once the message is leased again, the old lease is simply lost.
    h.now += 1_000
    h.take(2)
    with pytest.raises(LockLost):
        h.engine.nack("ns", "q", nacked.id, nacked.lock_id or "", now=h.now)
    with pytest.raises(LockLost):
        h.engine.release("ns", "q", released.id, released.lock_id or "", now=h.now)


def test_a_lease_that_ended_without_an_ack_cannot_be_acked_later(h: Harness) -> None:
    h.put()
    first = h.take_one()
    h.now = (first.lock_deadline or 0) + 1
    second = h.take_one()
    assert (second.id, second.lock_id) == (first.id, "L2")
    h.engine.ack("ns", "q", second.id, "L2", now=h.now)
    with pytest.raises(LockLost):  # L1 ended before; only L2 was acked
        h.engine.ack("ns", "q", first.id, "L1", now=h.now)


def test_wrong_or_expired_lock_is_lock_lost_and_changes_nothing(h: Harness) -> None:
    h.put()
    message = h.take_one()
    before = h.engine.snapshot()
    for call in (
        lambda lock: h.engine.ack("ns", "q", message.id, lock, now=h.now),
        lambda lock: h.engine.nack("ns", "q", message.id, lock, now=h.now),
        lambda lock: h.engine.extend("ns", "q", message.id, lock, add_ms=5, now=h.now),
        lambda lock: h.engine.refresh("ns", "q", message.id, lock, now=h.now),
        lambda lock: h.engine.release("ns", "q", message.id, lock, now=h.now),
    ):
        with pytest.raises(LockLost) as raised:
            call("other")
        assert raised.value.message_id == message.id
        with pytest.raises(InvalidArgument) as invalid:
            call("bad lock!")
        assert invalid.value.field == "lock_id"
    assert h.engine.snapshot() == before
    # At the deadline the lease has ended, even before any tick ran.
    h.now = message.lock_deadline or 0
    with pytest.raises(LockLost):
        h.engine.ack("ns", "q", message.id, "L1", now=h.now)


def test_unknown_message(h: Harness) -> None:
    with pytest.raises(MessageNotFound) as raised:
        h.engine.ack("ns", "q", "nope", "L", now=h.now)
    assert raised.value.message_id == "nope"
    with pytest.raises(InvalidArgument) as invalid:
        h.engine.ack("ns", "q", "no pe", "L", now=h.now)
    assert invalid.value.field == "message_id"
    with pytest.raises(MessageNotFound):
        h.get("nope")


def test_nack_backs_off_exponentially(make_harness: Any) -> None:
    h = make_harness(QueueConfig(backoff=BackoffPolicy(base_ms=100, factor=2.0, cap_ms=300)))
    h.put()
    waits = []
    for _ in range(4):
        message = h.take_one()
        result = h.engine.nack("ns", "q", message.id, message.lock_id, now=h.now, error="boom")
        assert result.outcome is NackOutcome.DELAYED
        waits.append((result.visible_at or 0) - h.now)
        assert h.take() == []
        h.now = result.visible_at or 0
    assert waits == [100, 200, 300, 300]
    view = h.get("m1")
    assert (view.last_error, view.failure_reason) == ("boom", FailureReason.PROCESSING_ERROR)
    assert h.stats().totals["nacked"] == 4


def test_nack_explicit_delay_zero_requeues_in_priority_order(h: Harness) -> None:
    h.put(priority=5)
    h.put(priority=5)
    h.put(priority=1)
    first = h.take_one()
    result = h.engine.nack("ns", "q", first.id, first.lock_id or "", now=h.now, delay_ms=0)
    assert result == (NackOutcome.REQUEUED, h.now)
    # The retried message keeps its place: ahead of its later equal, behind nothing lower.
    assert [m.id for m in h.take(3)] == ["m1", "m2", "m3"]


def test_max_deliveries_dead_letters(make_harness: Any) -> None:
    h = make_harness(QueueConfig(max_deliveries=2))
    h.put(priority=7, fairness_key="t")
    for expected in (NackOutcome.REQUEUED, NackOutcome.DEAD_LETTERED):
        message = h.take_one()
        result = h.engine.nack(
            "ns",
            "q",
            message.id,
            message.lock_id,
            now=h.now,
            delay_ms=0,
            reason=FailureReason.INVALID_PAYLOAD,
        )
        assert result.outcome is expected
    view = h.get("m1")
    assert (view.state, view.deliveries, view.priority) == (MessageState.DEAD, 2, 7)
    stats = h.stats()
    assert (stats.dead, stats.ready, stats.totals["dead_lettered"]) == (1, 0, 1)


def test_per_message_max_deliveries_and_unlimited(make_harness: Any) -> None:
    h = make_harness(QueueConfig(max_deliveries=0))
    h.put()
    h.put(max_deliveries=1, priority=1)
    for _ in range(20):
        message = h.take_one()
        h.engine.nack("ns", "q", message.id, message.lock_id, now=h.now, delay_ms=0)
        if message.id == "m2":
            assert h.get("m2").state is MessageState.DEAD
    assert h.get("m1").deliveries == 19
    assert h.get("m1").state is MessageState.READY


def test_max_deliveries_without_dlq_drops(make_harness: Any) -> None:
    h = make_harness(QueueConfig(max_deliveries=1, dead_letter=False))
    h.put()
    message = h.take_one()
    result = h.engine.nack("ns", "q", message.id, message.lock_id, now=h.now)
    assert result.outcome is NackOutcome.DROPPED
    with pytest.raises(MessageNotFound):
        h.get(message.id)
    message = h.put()
    leased = h.take_one()
    with pytest.raises(InvalidArgument) as raised:
        h.engine.nack("ns", "q", leased.id, leased.lock_id, now=h.now, dead_letter=True)
    assert raised.value.field == "dead_letter"
    assert h.get(message.message_id).state is MessageState.LEASED


def test_nack_dead_letter_now(h: Harness) -> None:
    h.put()
    message = h.take_one()
    result = h.engine.nack(
        "ns",
        "q",
        message.id,
        message.lock_id or "",
        now=h.now,
        dead_letter=True,
        reason=FailureReason.POISON_MESSAGE,
    )
    assert result.outcome is NackOutcome.DEAD_LETTERED
    assert h.get(message.id).failure_reason is FailureReason.POISON_MESSAGE


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"reason": "nonsense"}, "reason"),
        ({"error": "e" * 4097}, "error"),
        ({"error": 5}, "error"),
        ({"delay_ms": -1}, "delay_ms"),
        ({"dead_letter": "yes"}, "dead_letter"),
    ],
)
def test_nack_bad_input(h: Harness, fields: dict[str, Any], field: str) -> None:
    h.put()
    message = h.take_one()
    before = h.engine.snapshot()
    with pytest.raises(InvalidArgument) as raised:
        h.engine.nack("ns", "q", message.id, message.lock_id or "", now=h.now, **fields)
    assert raised.value.field == field
    assert h.engine.snapshot() == before


def test_nack_accepts_reason_values(h: Harness) -> None:
    h.put()
    message = h.take_one()
    h.engine.nack("ns", "q", message.id, message.lock_id, now=h.now, reason="handler_timeout")  # type: ignore[arg-type]
    assert h.get(message.id).failure_reason is FailureReason.HANDLER_TIMEOUT


def test_extend_refresh_and_set_visibility(h: Harness) -> None:
    h.put()
    message = h.take_one(visibility_timeout_ms=10_000)
    lock = message.lock_id or ""
    start = h.now
    assert h.engine.extend("ns", "q", message.id, lock, add_ms=5_000, now=h.now) == start + 15_000
    h.advance(12_000)  # past the original deadline, inside the extended one
    assert h.engine.refresh("ns", "q", message.id, lock, now=h.now) == h.now + 10_000
    assert (
        h.engine.set_visibility_timeout("ns", "q", message.id, lock, timeout_ms=2_000, now=h.now)
        == h.now + 2_000
    )
    h.advance(1_000)
    assert h.engine.refresh("ns", "q", message.id, lock, now=h.now) == h.now + 2_000
    assert h.get(message.id).lock_deadline == h.now + 2_000
    # The old deadlines are gone: nothing expires at them.
    h.advance(1_500)
    assert h.engine.tick(h.now).lease_expired == 0
    h.advance(500)
    assert h.engine.tick(h.now).lease_expired == 1


def test_extend_from_the_deadline_held_adds_once(h: Harness) -> None:
    """A client that names the deadline it holds can send the same extend
    twice (a retry after a lost answer): the lease is extended once."""
    h.put()
    message = h.take_one(visibility_timeout_ms=10_000)
    lock, held = message.lock_id or "", message.lock_deadline or 0

    def extend(add_ms: int, from_deadline: int | None) -> int:
        return h.engine.extend(
            "ns", "q", message.id, lock, add_ms=add_ms, now=h.now, from_deadline=from_deadline
        )

    assert extend(5_000, held) == held + 5_000
    h.advance(100)
    updated = h.get(message.id).updated_at
    assert extend(5_000, held) == held + 5_000  # the retry: nothing more
    assert h.get(message.id).updated_at == updated
    assert extend(1_000, held) == held + 5_000  # a stale deadline never shortens the lease
    assert extend(5_000, held + 5_000) == held + 10_000  # the next extend, from the new one
    assert extend(1_000, None) == held + 11_000  # without one: from the lease's deadline
    for bad in (-1, 2**63):
        with pytest.raises(InvalidArgument) as raised:
            extend(1_000, bad)
        assert raised.value.field == "from_deadline"
    assert h.get(message.id).lock_deadline == held + 11_000
    with pytest.raises(InvalidArgument) as raised:
        extend(1_000, h.now + 12 * 3_600_000)  # past the 12 h a lease may reach
    assert raised.value.field == "add_ms"


def test_extend_limits(h: Harness) -> None:
    h.put()
    message = h.take_one()
    lock = message.lock_id or ""
    for fields, field in (({"add_ms": 0}, "add_ms"), ({"add_ms": 12 * 3_600_000}, "add_ms")):
        with pytest.raises(InvalidArgument) as raised:
            h.engine.extend("ns", "q", message.id, lock, now=h.now, **fields)
        assert raised.value.field == field
    with pytest.raises(InvalidArgument) as raised:
        h.engine.set_visibility_timeout("ns", "q", message.id, lock, timeout_ms=10, now=h.now)
    assert raised.value.field == "timeout_ms"


def test_release_gives_the_delivery_back(make_harness: Any) -> None:
    h = make_harness(QueueConfig(max_deliveries=1))
    h.put()
    message = h.take_one()
    assert h.engine.release("ns", "q", message.id, message.lock_id, now=h.now) == h.now
    view = h.get(message.id)
    assert (view.state, view.deliveries, view.lock_id) == (MessageState.READY, 0, None)
    message = h.take_one()
    visible = h.engine.release("ns", "q", message.id, message.lock_id, now=h.now, delay_ms=50)
    assert visible == h.now + 50
    assert h.get(message.id).state is MessageState.DELAYED
    h.now = visible
    message = h.take_one()
    at = h.engine.release("ns", "q", message.id, message.lock_id, now=h.now, visible_at=h.now + 7)
    assert at == h.now + 7
    with pytest.raises(InvalidArgument) as raised:
        h.engine.release(
            "ns", "q", message.id, message.lock_id, now=h.now, delay_ms=1, visible_at=1
        )
    assert raised.value.field == "visible_at"


def test_lease_expiry_returns_then_dead_letters(make_harness: Any) -> None:
    h = make_harness(QueueConfig(max_deliveries=2, visibility_timeout_ms=1_000))
    h.put()
    first = h.take_one()
    h.advance(999)
    assert h.engine.tick(h.now).lease_expired == 0
    h.advance(1)
    report = h.engine.tick(h.now)
    assert (report.lease_expired, report.queues) == (1, (("ns", "q"),))
    view = h.get(first.id)
    assert (view.state, view.failure_reason) == (
        MessageState.READY,
        FailureReason.VISIBILITY_TIMEOUT_EXCEEDED,
    )
    h.take_one()
    h.advance(1_000)
    # dequeue applies due transitions itself: no tick needed.
    assert h.take() == []
    assert h.get(first.id).state is MessageState.DEAD


def test_ttl_expiry_dead_letters_or_drops(make_harness: Any) -> None:
    h = make_harness()
    h.put(ttl_ms=100)
    h.put(ttl_ms=100, delay_ms=50)
    h.put()
    h.advance(100)
    report = h.engine.tick(h.now)
    assert (report.expired, report.dead_lettered) == (2, 2)
    assert h.get("m1").failure_reason is FailureReason.EXPIRED
    assert h.get("m2").state is MessageState.DEAD
    assert h.stats().totals["expired"] == 2

    dropping = make_harness(QueueConfig(dead_letter=False))
    dropping.put(ttl_ms=100)
    dropping.advance(100)
    assert [m.id for m in dropping.take(5)] == []
    assert dropping.engine.tick(dropping.now).expired == 0
    with pytest.raises(MessageNotFound):
        dropping.get("m1")


def test_a_leased_message_expires_when_its_lease_ends(h: Harness) -> None:
    h.put(ttl_ms=100)
    message = h.take_one(visibility_timeout_ms=1_000)
    h.advance(200)
    h.engine.tick(h.now)
    assert h.get(message.id).state is MessageState.LEASED
    h.engine.extend("ns", "q", message.id, message.lock_id or "", add_ms=10, now=h.now)
    h.advance(810)
    h.engine.tick(h.now)
    view = h.get(message.id)
    assert (view.state, view.failure_reason) == (MessageState.DEAD, FailureReason.EXPIRED)


def test_ack_of_an_expired_ttl_message_under_a_live_lease_succeeds(h: Harness) -> None:
    h.put(ttl_ms=100)
    message = h.take_one()
    h.advance(500)
    h.engine.ack("ns", "q", message.id, message.lock_id or "", now=h.now)
    assert h.get(message.id).state is MessageState.SUCCEEDED


def test_nack_or_release_past_ttl_expires(h: Harness) -> None:
    h.put(ttl_ms=100)
    h.put(ttl_ms=100)
    first, second = h.take(2)
    h.advance(100)
    result = h.engine.nack("ns", "q", first.id, first.lock_id or "", now=h.now)
    assert result.outcome is NackOutcome.EXPIRED
    h.engine.release("ns", "q", second.id, second.lock_id or "", now=h.now)
    assert h.get(second.id).state is MessageState.DEAD


def test_a_requeued_message_keeps_its_ttl(h: Harness) -> None:
    h.put(ttl_ms=5_000)
    message = h.take_one(visibility_timeout_ms=1_000)
    h.advance(1_000)  # the lease ends; the message is ready again with its TTL
    h.engine.tick(h.now)
    assert h.get(message.id).state is MessageState.READY
    h.advance(4_000)
    assert h.engine.tick(h.now).expired == 1


def test_retention_purges_oldest_first(make_harness: Any) -> None:
    h = make_harness(QueueConfig(retention=RetentionPolicy(period_ms=1_000, max_count=2)))
    for _ in range(3):
        h.put()
    for message in h.take(3):
        h.engine.ack("ns", "q", message.id, message.lock_id or "", now=h.now)
        h.advance(10)
    with pytest.raises(MessageNotFound):
        h.get("m1")
    assert h.get("m2").state is MessageState.SUCCEEDED
    h.advance(985)
    assert h.engine.tick(h.now).purged == 1
    assert h.stats().succeeded == 1
    # A new retention applies at once.
    h.engine.update_queue(
        "ns", "q", QueueConfig(retention=RetentionPolicy(period_ms=1_000, max_count=0)), now=h.now
    )
    assert h.stats().succeeded == 0


def test_lower_max_deliveries_applies_to_held_messages(h: Harness) -> None:
    h.put()
    for _ in range(3):
        message = h.take_one()
        h.engine.nack("ns", "q", message.id, message.lock_id or "", now=h.now, delay_ms=0)
    h.engine.update_queue("ns", "q", QueueConfig(max_deliveries=2), now=h.now)
    message = h.take_one()
    result = h.engine.nack("ns", "q", message.id, message.lock_id or "", now=h.now, delay_ms=0)
    assert result.outcome is NackOutcome.DEAD_LETTERED


def test_peek_does_not_lock(h: Harness) -> None:
    h.put(priority=1)
    h.put(priority=3)
    h.put(delay_ms=10, priority=9)
    peeked = h.engine.peek("ns", "q", now=h.now, count=5)
    assert [(m.id, m.state) for m in peeked] == [
        ("m2", MessageState.READY),
        ("m1", MessageState.READY),
    ]
    h.advance(10)
    assert [m.id for m in h.engine.peek("ns", "q", now=h.now, count=2)] == ["m3", "m2"]
    assert [m.id for m in h.take(5)] == ["m3", "m2", "m1"]
    with pytest.raises(InvalidArgument):
        h.engine.peek("ns", "q", now=h.now, count=0)


def test_stats_oldest_ready_age(h: Harness) -> None:
    assert h.stats().oldest_ready_age_ms is None
    h.put(priority=1)
    h.advance(100)
    h.put(priority=9)
    h.advance(50)
    assert h.stats().oldest_ready_age_ms == 150
    h.take_one()  # takes m2 (higher priority); m1 is still the oldest
    assert h.stats().oldest_ready_age_ms == 150
    h.take_one()
    assert h.stats().oldest_ready_age_ms is None


def test_ack_batch_settles_each_item_on_its_own(h: Harness) -> None:
    for _ in range(3):
        h.put()
    first, second, third = h.take(3)
    results = h.engine.ack_batch(
        "ns",
        "q",
        [(first.id, "L1"), (second.id, "wrong"), ("ghost", "L1"), ("bad",), (third.id, "L1")],  # type: ignore[list-item]
        now=h.now,
    )
    assert results[0] is None and results[4] is None
    assert isinstance(results[1], LockLost)
    assert isinstance(results[2], MessageNotFound)
    assert isinstance(results[3], InvalidArgument) and results[3].field == "items[3]"
    assert h.get(second.id).state is MessageState.LEASED
    assert h.stats().succeeded == 2
    with pytest.raises(InvalidArgument) as raised:
        h.engine.ack_batch("ns", "q", [], now=h.now)
    assert raised.value.field == "items"


@pytest.mark.parametrize("bad", ["١٢٣", "\uff41\uff42\uff43", "a" * 129])
def test_ids_must_be_ascii(h: Harness, bad: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        h.engine.enqueue("ns", "q", b"x", message_id=bad, now=h.now)
    assert raised.value.field == "message_id"
