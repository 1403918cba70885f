from __future__ import annotations

from typing import Any

import pytest

from kokaq.core import (
    Headers,
    InvalidArgument,
    MessageExists,
    MessageSpec,
    MessageState,
    PayloadTooLarge,
    QueueConfig,
    QueueFull,
    RetentionPolicy,
)

from .conftest import Harness


def test_enqueue_keeps_every_field(h: Harness) -> None:
    headers = Headers("application/json", "corr-1", "email_send", "api", {"k": "v"})
    result = h.put(
        b"{}",
        priority=2**64 - 1,
        headers=headers,
        ttl_ms=60_000,
        max_deliveries=3,
        dedup_key="order-1",
        fairness_key="tenant-a",
        cost=4,
    )
    assert result.state is MessageState.READY
    assert result.duplicate is False
    view = h.get(result.message_id)
    assert view.payload == b"{}"
    assert view.priority == 2**64 - 1
    assert view.headers == headers
    assert view.expires_at == h.now + 60_000
    assert (view.max_deliveries, view.dedup_key, view.fairness_key, view.cost) == (
        3,
        "order-1",
        "tenant-a",
        4,
    )
    assert (view.created_at, view.visible_at, view.deliveries) == (h.now, h.now, 0)
    assert (view.namespace, view.queue) == ("ns", "q")


def test_delay_and_run_at_make_a_message_delayed(h: Harness) -> None:
    delayed = h.put(delay_ms=500)
    at = h.put(run_at=h.now + 700)
    past = h.put(run_at=h.now - 10)
    assert (delayed.state, delayed.visible_at) == (MessageState.DELAYED, h.now + 500)
    assert (at.state, at.visible_at) == (MessageState.DELAYED, h.now + 700)
    assert (past.state, past.visible_at) == (MessageState.READY, h.now)
    assert [m.id for m in h.take(5)] == [past.message_id]
    h.advance(500)
    assert [m.id for m in h.take(5)] == [delayed.message_id]
    h.advance(200)
    assert [m.id for m in h.take(5)] == [at.message_id]


def test_default_ttl_comes_from_the_queue(make_harness: Any) -> None:
    h = make_harness(QueueConfig(default_ttl_ms=1_000))
    assert h.get(h.put().message_id).expires_at == h.now + 1_000
    assert h.get(h.put(expires_at=h.now + 5).message_id).expires_at == h.now + 5


BAD_FIELDS: list[tuple[dict[str, Any], str, type[Exception]]] = [
    ({"payload": "text"}, "payload", InvalidArgument),
    ({"payload": b"x" * (1024 * 1024 + 1)}, "payload", PayloadTooLarge),
    ({"priority": -1}, "priority", InvalidArgument),
    ({"priority": 2**64}, "priority", InvalidArgument),
    ({"priority": 1.0}, "priority", InvalidArgument),
    ({"priority": True}, "priority", InvalidArgument),
    ({"headers": {"type": "x"}}, "headers", InvalidArgument),
    ({"headers": Headers(type="")}, "headers.type", InvalidArgument),
    ({"headers": Headers(source="s" * 257)}, "headers.source", InvalidArgument),
    ({"headers": Headers(user={f"k{i}": "v" for i in range(33)})}, "headers.user", InvalidArgument),
    ({"headers": Headers(user={"k": "v" * 1025})}, "headers.user[k]", InvalidArgument),
    ({"headers": Headers(user={"bad\nkey": "v"})}, "headers.user", InvalidArgument),
    ({"delay_ms": -1}, "delay_ms", InvalidArgument),
    ({"delay_ms": 367 * 86_400_000}, "delay_ms", InvalidArgument),
    ({"delay_ms": 1, "run_at": 5}, "run_at", InvalidArgument),
    ({"run_at": -5}, "run_at", InvalidArgument),
    ({"ttl_ms": 0}, "ttl_ms", InvalidArgument),
    ({"ttl_ms": 5, "expires_at": 10_000}, "expires_at", InvalidArgument),
    ({"expires_at": 1_000}, "expires_at", InvalidArgument),
    ({"ttl_ms": 100, "delay_ms": 100}, "expires_at", InvalidArgument),
    ({"max_deliveries": -1}, "max_deliveries", InvalidArgument),
    ({"dedup_key": ""}, "dedup_key", InvalidArgument),
    ({"dedup_key": "d" * 257}, "dedup_key", InvalidArgument),
    ({"fairness_key": "t" * 129}, "fairness_key", InvalidArgument),
    ({"fairness_key": 7}, "fairness_key", InvalidArgument),
    ({"cost": 0}, "cost", InvalidArgument),
    ({"cost": True}, "cost", InvalidArgument),
]


@pytest.mark.parametrize(("fields", "field", "error"), BAD_FIELDS)
def test_bad_fields_are_rejected_and_change_nothing(
    h: Harness, fields: dict[str, Any], field: str, error: type[Exception]
) -> None:
    h.put()
    before = h.engine.snapshot()
    payload = fields.pop("payload", b"x")
    with pytest.raises(error) as raised:
        h.engine.enqueue("ns", "q", payload, message_id="new", now=h.now, **fields)
    assert raised.value.field == field  # type: ignore[attr-defined]
    assert h.engine.snapshot() == before


def test_priority_limits_come_from_the_queue(make_harness: Any) -> None:
    h = make_harness(QueueConfig(min_priority=10, max_priority=20))
    h.put(priority=10)
    h.put(priority=20)
    for bad in (9, 21):
        with pytest.raises(InvalidArgument, match="between 10 and 20"):
            h.put(priority=bad)


@pytest.mark.parametrize("bad_id", ["", "x" * 129, "has space", "a/b", None, 12])
def test_bad_message_ids(h: Harness, bad_id: Any) -> None:
    with pytest.raises(InvalidArgument) as raised:
        h.engine.enqueue("ns", "q", b"x", message_id=bad_id, now=h.now)
    assert raised.value.field == "message_id"


def test_message_ids_are_unique_per_queue(h: Harness) -> None:
    h.engine.enqueue("ns", "q", b"x", message_id="same", now=h.now)
    with pytest.raises(MessageExists):
        h.engine.enqueue("ns", "q", b"y", message_id="same", now=h.now)
    assert h.get("same").payload == b"x"


def test_bytearray_and_memoryview_payloads_are_copied(h: Harness) -> None:
    data = bytearray(b"abc")
    result = h.put(data)  # type: ignore[arg-type]
    data[0] = ord("z")
    assert h.get(result.message_id).payload == b"abc"
    assert h.get(h.put(memoryview(b"mv")).message_id).payload == b"mv"  # type: ignore[arg-type]


def test_dedup_within_window_returns_the_first_id(h: Harness) -> None:
    first = h.put(b"one", dedup_key="k")
    again = h.put(b"two", dedup_key="k")
    assert again.message_id == first.message_id
    assert again.duplicate is True
    assert h.stats().ready == 1
    assert h.stats().totals["enqueued"] == 1
    # Still a duplicate after the first was processed, until the window ends.
    message = h.take_one()
    h.engine.ack("ns", "q", message.id, message.lock_id or "", now=h.now)
    assert h.put(dedup_key="k").message_id == first.message_id
    h.advance(300_000)
    fresh = h.put(b"three", dedup_key="k")
    assert fresh.message_id != first.message_id
    assert fresh.duplicate is False


def test_dedup_answer_survives_purge_of_the_first(make_harness: Any) -> None:
    h = make_harness(QueueConfig(retention=RetentionPolicy(max_count=0)))
    first = h.put(dedup_key="k")
    message = h.take_one()
    h.engine.ack("ns", "q", message.id, message.lock_id, now=h.now)
    again = h.put(dedup_key="k")
    assert (again.message_id, again.state, again.duplicate) == (first.message_id, None, True)


def test_queue_full(make_harness: Any) -> None:
    h = make_harness(QueueConfig(max_length=2))
    h.put()
    h.put(delay_ms=10)
    with pytest.raises(QueueFull) as raised:
        h.put()
    assert (raised.value.namespace, raised.value.queue, raised.value.limit) == ("ns", "q", 2)
    # Leased messages still count; settled ones do not.
    message = h.take_one()
    with pytest.raises(QueueFull):
        h.put()
    h.engine.ack("ns", "q", message.id, message.lock_id, now=h.now)
    h.put()


def test_batch_enqueue(h: Harness) -> None:
    specs = [
        MessageSpec(payload=b"a", priority=1),
        MessageSpec(payload=b"b", priority=5, dedup_key="d"),
        MessageSpec(payload=b"c", dedup_key="d"),
        MessageSpec(payload=b"d", delay_ms=10),
    ]
    results = h.engine.enqueue_batch("ns", "q", specs, message_ids=["a", "b", "c", "d"], now=h.now)
    assert [r.message_id for r in results] == ["a", "b", "b", "d"]
    assert [r.duplicate for r in results] == [False, False, True, False]
    assert results[3].state is MessageState.DELAYED
    assert [m.id for m in h.take(10)] == ["b", "a"]


def test_batch_is_all_or_nothing_and_names_the_item(h: Harness) -> None:
    before = h.engine.snapshot()
    specs = [MessageSpec(payload=b"ok"), MessageSpec(payload=b"bad", priority=-1)]
    with pytest.raises(InvalidArgument) as raised:
        h.engine.enqueue_batch("ns", "q", specs, message_ids=["a", "b"], now=h.now)
    assert raised.value.field == "items[1].priority"
    with pytest.raises(InvalidArgument) as raised:
        h.engine.enqueue_batch("ns", "q", specs[:1], message_ids=["a", "b"], now=h.now)
    assert raised.value.field == "message_ids"
    with pytest.raises(InvalidArgument) as raised:
        h.engine.enqueue_batch("ns", "q", [], message_ids=[], now=h.now)
    assert raised.value.field == "items"
    with pytest.raises(InvalidArgument) as raised:
        h.engine.enqueue_batch("ns", "q", [b"raw"], message_ids=["a"], now=h.now)  # type: ignore[list-item]
    assert raised.value.field == "items[0]"
    with pytest.raises(MessageExists):
        h.engine.enqueue_batch("ns", "q", specs[:1] * 2, message_ids=["a", "a"], now=h.now)
    assert h.engine.snapshot() == before


def test_batch_respects_max_length(make_harness: Any) -> None:
    h = make_harness(QueueConfig(max_length=3))
    h.put()
    before = h.engine.snapshot()
    specs = [MessageSpec(payload=b"x")] * 3
    with pytest.raises(QueueFull):
        h.engine.enqueue_batch("ns", "q", specs, message_ids=["a", "b", "c"], now=h.now)
    assert h.engine.snapshot() == before
    h.engine.enqueue_batch("ns", "q", specs[:2], message_ids=["a", "b"], now=h.now)
    assert h.stats().ready == 3
