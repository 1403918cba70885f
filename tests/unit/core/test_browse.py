from __future__ import annotations

import pytest

from kokaq.core import (
    InvalidArgument,
    InvalidState,
    MessageNotFound,
    MessageState,
    QueueConfig,
    QueueFull,
    SchedulingPolicy,
)

from .conftest import Harness


def test_list_messages_newest_first_filtered_by_state(h: Harness) -> None:
    ids = [h.put().message_id for _ in range(4)]
    h.take_one()  # m1 leased
    h.put(delay_ms=5_000)  # m5 delayed
    listed = h.engine.list_messages("ns", "q")
    assert [m.id for m in listed] == ["m5", *reversed(ids)]
    ready = h.engine.list_messages("ns", "q", states=[MessageState.READY], limit=2)
    assert [m.id for m in ready] == ["m4", "m3"]
    leased = h.engine.list_messages("ns", "q", states=["leased", "delayed"])
    assert [(m.id, m.state) for m in leased] == [
        ("m5", MessageState.DELAYED),
        ("m1", MessageState.LEASED),
    ]


def test_list_messages_bad_input(h: Harness) -> None:
    for fields, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"states": ["waiting"]}, "states"),
        ({"states": "ready"}, "states"),
    ):
        with pytest.raises(InvalidArgument) as raised:
            h.engine.list_messages("ns", "q", **fields)
        assert raised.value.field == field


def test_find_message_searches_every_queue_of_the_namespace(h: Harness) -> None:
    h.engine.create_queue("ns", "other", now=h.now)
    h.engine.enqueue("ns", "other", b"there", message_id="far", now=h.now)
    found = h.engine.find_message("ns", "far")
    assert (found.queue, found.payload) == ("other", b"there")
    with pytest.raises(MessageNotFound):
        h.engine.find_message("ns", "nowhere")
    with pytest.raises(InvalidArgument) as raised:
        h.engine.find_message("ns", "")
    assert raised.value.field == "message_id"


def test_cancel_removes_waiting_and_dead_messages_only() -> None:
    h = Harness(QueueConfig(max_deliveries=1))
    first, second, third, fourth = (h.put().message_id for _ in range(4))
    assert h.engine.cancel_message("ns", "q", first, now=h.now).state is MessageState.READY
    (failing,) = h.take()  # the second: one delivery allowed, so a nack kills it
    h.engine.nack("ns", "q", failing.id, failing.lock_id or "", now=h.now)
    assert h.get(second).state is MessageState.DEAD
    assert h.engine.cancel_message("ns", "q", second, now=h.now).state is MessageState.DEAD
    delayed = h.put(delay_ms=60_000).message_id
    assert h.engine.cancel_message("ns", "q", delayed, now=h.now).state is MessageState.DELAYED
    (held,) = h.take()  # the third
    with pytest.raises(InvalidState) as raised:
        h.engine.cancel_message("ns", "q", held.id, now=h.now)
    assert raised.value.state == "leased"
    h.engine.ack("ns", "q", held.id, held.lock_id or "", now=h.now)
    with pytest.raises(InvalidState):
        h.engine.cancel_message("ns", "q", held.id, now=h.now)
    for gone in (first, second, delayed):
        with pytest.raises(MessageNotFound):
            h.get(gone)
    assert h.engine.list_dead("ns", "q").messages == []
    stats = h.stats()
    assert (stats.ready, stats.delayed, stats.dead, stats.succeeded) == (1, 0, 0, 1)
    assert [m.id for m in h.engine.list_messages("ns", "q", states=["ready"])] == [fourth]
    assert third == held.id


def test_cancel_frees_the_fairness_key_quota() -> None:
    h = Harness(QueueConfig(scheduling=SchedulingPolicy(max_per_key=1)))
    first = h.put(fairness_key="t").message_id
    with pytest.raises(QueueFull):
        h.put(fairness_key="t")
    h.engine.cancel_message("ns", "q", first, now=h.now)
    h.put(fairness_key="t")  # the quota has room again
    restored = type(h.engine).restore(h.engine.snapshot())
    assert restored.stats("ns", "q").ready == 1
