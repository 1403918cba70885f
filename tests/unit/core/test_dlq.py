from __future__ import annotations

from typing import Any

import pytest

from kokaq.core import (
    InvalidArgument,
    InvalidState,
    MessageNotFound,
    MessageState,
    NotEmpty,
    QueueConfig,
)

from .conftest import Harness


def kill(h: Harness, count: int, **fields: Any) -> list[str]:
    """Enqueue ``count`` messages and dead-letter each through a nack."""
    ids = [h.put(**fields).message_id for _ in range(count)]
    for message in h.take(count):
        h.engine.nack("ns", "q", message.id, message.lock_id or "", now=h.now, dead_letter=True)
        h.advance(1)
    return ids


def test_list_pages_in_dead_letter_order(h: Harness) -> None:
    ids = kill(h, 5)
    page = h.engine.list_dead("ns", "q", limit=2)
    assert [m.id for m in page.messages] == ids[:2]
    assert all(m.state is MessageState.DEAD for m in page.messages)
    page2 = h.engine.list_dead("ns", "q", limit=2, after=page.next_cursor)
    page3 = h.engine.list_dead("ns", "q", limit=2, after=page2.next_cursor)
    assert [m.id for m in page2.messages + page3.messages] == ids[2:]
    assert page3.next_cursor is None
    assert h.engine.list_dead("ns", "q", limit=5).next_cursor is None


def test_list_bad_input(h: Harness) -> None:
    for fields, field in (({"limit": 0}, "limit"), ({"after": -1}, "after")):
        with pytest.raises(InvalidArgument) as raised:
            h.engine.list_dead("ns", "q", **fields)
        assert raised.value.field == field


def test_redrive_all_keeps_priority_and_order(h: Harness) -> None:
    kill(h, 1, priority=1, fairness_key="a")
    kill(h, 1, priority=8, fairness_key="a")  # one flow: strict priority inside it
    created = h.get("m1").created_at
    h.advance(100)
    assert h.engine.redrive("ns", "q", now=h.now) == 2
    view = h.get("m1")
    assert (view.state, view.deliveries, view.priority, view.fairness_key, view.created_at) == (
        MessageState.READY,
        0,
        1,
        "a",
        created,
    )
    assert view.last_error is None and view.failure_reason is not None  # history kept
    assert [m.id for m in h.take(5)] == ["m2", "m1"]
    assert h.stats().dead == 0


def test_redrive_by_ids_is_all_or_nothing(h: Harness) -> None:
    ids = kill(h, 3)
    h.put()  # m4, ready
    before = h.engine.snapshot()
    with pytest.raises(InvalidState) as raised:
        h.engine.redrive("ns", "q", now=h.now, message_ids=[ids[0], "m4"])
    assert (raised.value.message_id, raised.value.state) == ("m4", "ready")
    with pytest.raises(MessageNotFound):
        h.engine.redrive("ns", "q", now=h.now, message_ids=[ids[0], "zzz"])
    with pytest.raises(InvalidArgument) as invalid:
        h.engine.redrive("ns", "q", now=h.now, message_ids="m1")
    assert invalid.value.field == "message_ids"
    with pytest.raises(InvalidArgument) as invalid:
        h.engine.redrive("ns", "q", now=h.now, message_ids=["ok", "not ok"])
    assert invalid.value.field == "message_ids[1]"
    assert h.engine.snapshot() == before
    assert h.engine.redrive("ns", "q", now=h.now, message_ids=[ids[1]]) == 1
    assert [m.id for m in h.engine.list_dead("ns", "q").messages] == [ids[0], ids[2]]


def test_redrive_revives_an_expired_message(make_harness: Any) -> None:
    h = make_harness()
    h.put(ttl_ms=10)
    h.put(ttl_ms=10_000, priority=1)
    second = h.take_one()
    h.engine.nack("ns", "q", "m2", second.lock_id, now=h.now, dead_letter=True)
    h.advance(10)
    h.engine.tick(h.now)
    assert h.get("m1").state is MessageState.DEAD
    h.engine.redrive("ns", "q", now=h.now)
    assert h.get("m1").expires_at is None
    assert h.get("m2").expires_at == 1_000 + 10_000
    assert h.engine.tick(h.now + 1).expired == 0


def test_purge_dead(h: Harness) -> None:
    ids = kill(h, 3)
    assert h.engine.purge_dead("ns", "q", now=h.now, message_ids=[ids[1]]) == 1
    with pytest.raises(MessageNotFound):
        h.get(ids[1])
    assert h.engine.purge_dead("ns", "q", now=h.now) == 2
    assert h.stats().dead == 0
    assert h.engine.list_dead("ns", "q").messages == []


def test_dead_messages_block_queue_delete(make_harness: Any) -> None:
    h = make_harness(QueueConfig())
    kill(h, 1)
    with pytest.raises(NotEmpty):
        h.engine.delete_queue("ns", "q", now=h.now)
