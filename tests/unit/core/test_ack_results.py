"""An ack may carry a result (a job's outcome): kept with the succeeded
message for its retention, in snapshots too; a bad one changes nothing."""

from __future__ import annotations

import pytest

from kokaq.core import Engine, InvalidArgument, LockLost, MessageState, PayloadTooLarge, QueueConfig
from tests.unit.core.conftest import Harness, older_snapshot


def test_an_ack_keeps_its_result_with_the_succeeded_message(h: Harness) -> None:
    h.put()
    leased = h.take_one()
    assert leased.result is None
    h.engine.ack("ns", "q", leased.id, leased.lock_id or "", now=h.now, result=b'{"sent": 3}')
    done = h.get(leased.id)
    assert (done.state, done.result) == (MessageState.SUCCEEDED, b'{"sent": 3}')


def test_a_repeated_ack_of_the_same_lease_keeps_the_first_result(h: Harness) -> None:
    h.put()
    leased = h.take_one()
    lock = leased.lock_id or ""
    h.engine.ack("ns", "q", leased.id, lock, now=h.now, result=b"first")
    h.engine.ack("ns", "q", leased.id, lock, now=h.now, result=b"second")  # a retried answer
    assert h.get(leased.id).result == b"first"


@pytest.mark.parametrize(
    ("result", "error", "text"),
    [
        ("text", InvalidArgument, "must be bytes"),
        (b"x" * 101, PayloadTooLarge, "result is 101 bytes, the limit is 100"),
    ],
)
def test_a_bad_result_is_refused_and_the_lease_kept(
    result: object, error: type[InvalidArgument], text: str
) -> None:
    h = Harness(QueueConfig(max_payload_bytes=100))
    h.put()
    leased = h.take_one()
    with pytest.raises(error) as refused:
        h.engine.ack("ns", "q", leased.id, leased.lock_id or "", now=h.now, result=result)  # type: ignore[arg-type]
    assert refused.value.field == "result" and text in str(refused.value)
    assert h.get(leased.id).state is MessageState.LEASED  # nothing changed
    h.engine.ack("ns", "q", leased.id, leased.lock_id or "", now=h.now, result=b"x" * 100)
    assert h.get(leased.id).result == b"x" * 100  # the limit itself is fine


def test_a_wrong_lock_with_a_result_is_lock_lost(h: Harness) -> None:
    h.put()
    leased = h.take_one()
    with pytest.raises(LockLost):
        h.engine.ack("ns", "q", leased.id, "not-the-lock", now=h.now, result=b"r")
    assert h.get(leased.id).result is None


def test_ack_batch_takes_pairs_and_triples_each_alone() -> None:
    h = Harness(QueueConfig(max_payload_bytes=10))
    for _ in range(4):
        h.put()
    a, b, c, d = h.take(4)
    errors = h.engine.ack_batch(
        "ns",
        "q",
        [
            (a.id, a.lock_id or ""),
            (b.id, b.lock_id or "", b"ok"),
            (c.id, c.lock_id or "", b"far too long"),
            (d.id, d.lock_id or "", None),
        ],
        now=h.now,
    )
    assert errors[0] is None and errors[1] is None and errors[3] is None
    assert isinstance(errors[2], PayloadTooLarge) and errors[2].field == "items[2].result"
    assert [h.get(m.id).result for m in (a, b, d)] == [None, b"ok", None]
    assert h.get(c.id).state is MessageState.LEASED
    (bad,) = h.engine.ack_batch("ns", "q", [(c.id, c.lock_id, b"r", "extra")], now=h.now)  # type: ignore[list-item]
    assert isinstance(bad, InvalidArgument) and bad.field == "items[0]"


def test_results_survive_a_snapshot_and_older_snapshots_load(h: Harness) -> None:
    h.put()
    leased = h.take_one()
    h.engine.ack("ns", "q", leased.id, leased.lock_id or "", now=h.now, result=b"r")
    snapshot = h.engine.snapshot()
    assert Engine.restore(snapshot).get_message("ns", "q", leased.id).result == b"r"
    old = older_snapshot(snapshot, leased.id, 22)  # before result and progress
    restored = Engine.restore(old).get_message("ns", "q", leased.id)
    assert (restored.state, restored.result) == (MessageState.SUCCEEDED, None)
