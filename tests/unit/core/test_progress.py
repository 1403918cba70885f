"""The holder of a lease may report how far it is: kept with the message
until it is leased again, a heartbeat too; bad reports change nothing."""

from __future__ import annotations

import pytest

from kokaq.core import MAX_PROGRESS, Engine, FailureReason, InvalidArgument, LockLost, QueueConfig
from tests.unit.core.conftest import Harness


def report(h: Harness, message_id: str, lock_id: str, progress: object) -> int:
    return h.engine.report_progress("ns", "q", message_id, lock_id, progress, now=h.now)  # type: ignore[arg-type]


def test_a_report_is_kept_and_restarts_the_lease() -> None:
    h = Harness(QueueConfig(visibility_timeout_ms=10_000))
    h.put()
    leased = h.take_one()
    h.advance(4_000)
    deadline = report(h, leased.id, leased.lock_id or "", '{"step": 2, "of": 5}')
    assert deadline == h.now + 10_000
    shown = h.get(leased.id)
    assert (shown.progress, shown.lock_deadline) == ('{"step": 2, "of": 5}', deadline)
    report(h, leased.id, leased.lock_id or "", "60")  # the latest wins
    assert h.get(leased.id).progress == "60"


def test_the_next_attempt_starts_without_the_last_one_s_progress(h: Harness) -> None:
    h.put()
    first = h.take_one()
    report(h, first.id, first.lock_id or "", "halfway")
    h.engine.nack(
        "ns", "q", first.id, first.lock_id or "", now=h.now,
        reason=FailureReason.PROCESSING_ERROR, error="boom", delay_ms=0,
    )  # fmt: skip
    assert h.get(first.id).progress == "halfway"  # where it failed, until it runs again
    second = h.take_one()
    assert second.id == first.id and second.progress is None
    h.engine.ack("ns", "q", second.id, second.lock_id or "", now=h.now)
    assert h.get(first.id).progress is None


@pytest.mark.parametrize(
    ("progress", "text"),
    [(42, "must be a string"), ("é" * (MAX_PROGRESS // 2 + 1), "bytes")],
)
def test_a_bad_report_is_refused_and_changes_nothing(
    h: Harness, progress: object, text: str
) -> None:
    h.put()
    leased = h.take_one()
    with pytest.raises(InvalidArgument) as refused:
        report(h, leased.id, leased.lock_id or "", progress)
    assert refused.value.field == "progress" and text in refused.value.reason
    after = h.get(leased.id)
    assert (after.progress, after.lock_deadline) == (None, leased.lock_deadline)
    report(h, leased.id, leased.lock_id or "", "x" * MAX_PROGRESS)  # the limit itself is fine


def test_only_the_live_lease_may_report(h: Harness) -> None:
    h.put()
    leased = h.take_one()
    with pytest.raises(LockLost):
        report(h, leased.id, "another-lock", "1")
    h.advance(QueueConfig().visibility_timeout_ms + 1)  # the lease ran out
    with pytest.raises(LockLost):
        report(h, leased.id, leased.lock_id or "", "1")
    assert h.get(leased.id).progress is None


def test_progress_survives_a_snapshot(h: Harness) -> None:
    h.put()
    leased = h.take_one()
    report(h, leased.id, leased.lock_id or "", "3/4")
    restored = Engine.restore(h.engine.snapshot())
    assert restored.get_message("ns", "q", leased.id).progress == "3/4"
