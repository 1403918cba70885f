"""Schedules in the engine: each fire enqueues the template once, at the
fire time the schedule waits for; a queue that refuses it is recorded and
skipped; bad schedules are refused naming the field; snapshots keep them."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from kokaq.core import (
    Engine,
    Headers,
    InvalidArgument,
    MessageSpec,
    QueueConfig,
    QueueNotFound,
    ScheduleInfo,
    ScheduleNotFound,
    ScheduleSpec,
)
from tests.unit.core.conftest import Harness

MINUTE = 60_000
TEMPLATE = MessageSpec(
    payload=b'{"report": "daily"}',
    priority=5,
    headers=Headers(content_type="application/json", type="report"),
    max_deliveries=3,
    fairness_key="tenant-a",
)


def put(h: Harness, name: str = "daily", *, next_fire_at: int = 0, **fields: Any) -> ScheduleInfo:
    given: dict[str, Any] = {"queue": "q", "cron": "0 6 * * *", "template": TEMPLATE} | fields
    spec = ScheduleSpec(**given)
    first = next_fire_at or h.now + MINUTE
    return h.engine.put_schedule("ns", name, spec, next_fire_at=first, now=h.now)


def fire(h: Harness, fire_at: int, next_fire_at: int, message_id: str = "f1") -> Any:
    return h.engine.fire_schedule(
        "ns", "daily", fire_at=fire_at, next_fire_at=next_fire_at, message_id=message_id, now=h.now
    )


def test_a_fire_enqueues_the_template_once_and_waits_for_the_next(h: Harness) -> None:
    first = h.now + MINUTE
    info = put(h, next_fire_at=first)
    assert (info.next_fire_at, info.last_fire_at, info.fired) == (first, None, 0)
    assert [s.name for s in h.engine.due_schedules(first - 1)] == []
    assert [s.name for s in h.engine.due_schedules(first)] == ["daily"]
    h.advance(MINUTE + 5)
    result = fire(h, first, first + 2 * MINUTE)
    assert result is not None and result.message_id == "f1"
    job = h.get("f1")
    assert (job.payload, job.priority, job.headers, job.fairness_key) == (
        TEMPLATE.payload,
        5,
        TEMPLATE.headers,
        "tenant-a",
    )
    assert job.max_deliveries == 3 and job.dedup_key == f"schedule:daily:{first}"
    shown = h.engine.get_schedule("ns", "daily")
    assert (shown.next_fire_at, shown.last_fire_at, shown.last_message_id, shown.fired) == (
        first + 2 * MINUTE,
        first,
        "f1",
        1,
    )
    # The same fire proposed again (a new leader, say) changes nothing.
    assert fire(h, first, first + 2 * MINUTE, "f2") is None
    assert h.stats().ready == 1 and h.engine.get_schedule("ns", "daily").fired == 1
    assert h.engine.due_schedules(h.now) == []


def test_a_paused_schedule_does_not_fire_and_a_trigger_runs_it_now(h: Harness) -> None:
    first = h.now + MINUTE
    put(h, next_fire_at=first, paused=True)
    h.advance(2 * MINUTE)
    assert h.engine.due_schedules(h.now) == []
    assert fire(h, first, first + MINUTE) is None
    triggered = h.engine.trigger_schedule("ns", "daily", message_id="t1", now=h.now)
    assert triggered.message_id == "t1" and h.get("t1").dedup_key == f"schedule:daily:now-{h.now}"
    shown = h.engine.get_schedule("ns", "daily")
    assert (shown.next_fire_at, shown.fired, shown.last_fire_at) == (first, 1, None)


def test_replacing_a_schedule_keeps_its_history(h: Harness) -> None:
    first = h.now + MINUTE
    put(h, next_fire_at=first)
    h.advance(MINUTE)
    fire(h, first, first + MINUTE)
    h.advance(10)
    replaced = h.engine.put_schedule(
        "ns", "daily", ScheduleSpec("q", "*/5 * * * *", TEMPLATE, "Europe/Paris"),
        next_fire_at=h.now + 5 * MINUTE, now=h.now,
    )  # fmt: skip
    assert replaced.spec.cron == "*/5 * * * *" and replaced.spec.timezone == "Europe/Paris"
    assert (replaced.fired, replaced.last_fire_at, replaced.next_fire_at) == (
        1,
        first,
        h.now + 5 * MINUTE,
    )
    assert replaced.created_at < replaced.updated_at == h.now
    assert [s.name for s in h.engine.list_schedules("ns")] == ["daily"]
    h.engine.delete_schedule("ns", "daily", now=h.now)
    assert h.engine.list_schedules("ns") == []
    with pytest.raises(ScheduleNotFound):
        h.engine.get_schedule("ns", "daily")
    with pytest.raises(ScheduleNotFound):
        h.engine.delete_schedule("ns", "daily", now=h.now)


def test_a_fire_its_queue_refuses_is_recorded_and_skipped() -> None:
    h = Harness(QueueConfig(max_length=1))
    first = h.now + MINUTE
    put(h, next_fire_at=first)
    h.put()  # the queue is full
    h.advance(MINUTE)
    assert fire(h, first, first + MINUTE) is None
    shown = h.engine.get_schedule("ns", "daily")
    assert shown.last_error is not None and "full" in shown.last_error
    assert (shown.fired, shown.next_fire_at, shown.last_fire_at) == (0, first + MINUTE, first)
    h.engine.purge_queue("ns", "q", now=h.now)  # room again
    h.advance(MINUTE)
    assert fire(h, first + MINUTE, first + 2 * MINUTE, "f2") is not None
    assert h.engine.get_schedule("ns", "daily").last_error is None


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cron": ""}, "cron"),
        ({"cron": "x" * 300}, "cron"),
        ({"timezone": ""}, "timezone"),
        ({"queue": "bad name"}, "queue"),
        ({"paused": "yes"}, "paused"),
        ({"template": b"x"}, "template"),
        ({"template": MessageSpec(payload=b"x", delay_ms=5)}, "template.delay_ms"),
        ({"template": MessageSpec(payload=b"x", dedup_key="k")}, "template.dedup_key"),
        ({"template": MessageSpec(payload=b"x", priority=-1)}, "template.priority"),
        ({"template": MessageSpec(payload=b"x", cost=0)}, "template.cost"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(
    h: Harness, fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        put(h, **fields)
    assert refused.value.field == field
    assert h.engine.list_schedules("ns") == []


def test_other_bad_calls_are_refused_and_change_nothing(h: Harness) -> None:
    with pytest.raises(QueueNotFound):
        put(h, queue="nope")
    with pytest.raises(InvalidArgument) as refused:
        put(h, "bad name")
    assert refused.value.field == "name"
    with pytest.raises(InvalidArgument) as refused:
        put(h, next_fire_at=-5)
    assert refused.value.field == "next_fire_at"
    first = h.now + MINUTE
    put(h, next_fire_at=first)
    with pytest.raises(InvalidArgument) as refused:
        fire(h, first, first)  # the next fire must come after this one
    assert refused.value.field == "next_fire_at"
    with pytest.raises(ScheduleNotFound):
        h.engine.fire_schedule(
            "ns", "other", fire_at=first, next_fire_at=first + 1, message_id="x", now=h.now
        )
    assert h.engine.get_schedule("ns", "daily").next_fire_at == first
    assert h.stats().ready == 0


def test_snapshots_keep_schedules_and_namespaces_without_keep_their_old_record(
    h: Harness,
) -> None:
    plain = h.engine.snapshot()
    (record,) = msgpack.unpackb(plain, strict_map_key=False)["namespaces"]
    assert len(record) == 5  # as the builds before schedules wrote it
    first = h.now + MINUTE
    put(h, next_fire_at=first, timezone="Asia/Tokyo", paused=True)
    h.advance(MINUTE)
    h.engine.trigger_schedule("ns", "daily", message_id="t1", now=h.now)
    restored = Engine.restore(h.engine.snapshot())
    assert restored.get_schedule("ns", "daily") == h.engine.get_schedule("ns", "daily")
    assert restored.snapshot() == h.engine.snapshot()
    assert Engine.restore(plain).list_schedules("ns") == []


def test_skip_if_running_enqueues_nothing_while_the_last_job_is_unfinished(h: Harness) -> None:
    first = h.now + MINUTE
    put(h, next_fire_at=first, skip_if_running=True)
    h.advance(MINUTE)
    assert fire(h, first, first + MINUTE, "f1") is not None
    h.advance(MINUTE)
    assert fire(h, first + MINUTE, first + 2 * MINUTE, "f2") is None  # f1 still waits
    shown = h.engine.get_schedule("ns", "daily")
    assert shown.last_error == "skipped: its last job f1 has not finished"
    assert (shown.fired, shown.next_fire_at, shown.last_message_id) == (1, first + 2 * MINUTE, "f1")
    leased = h.take_one()
    h.advance(1_000)  # within its lease
    assert fire(h, first + 2 * MINUTE, first + 3 * MINUTE, "f3") is None  # running
    h.engine.ack("ns", "q", leased.id, leased.lock_id or "", now=h.now)
    h.advance(MINUTE)
    assert fire(h, first + 3 * MINUTE, first + 4 * MINUTE, "f4") is not None
    assert h.engine.get_schedule("ns", "daily").last_error is None
    # Without the option the same fires overlap.
    put(h, next_fire_at=first + 5 * MINUTE)
    h.advance(2 * MINUTE)
    assert fire(h, first + 5 * MINUTE, first + 6 * MINUTE, "f5") is not None
    assert h.stats().ready == 2


def test_a_resumed_schedule_skips_the_times_it_passed_while_paused(h: Harness) -> None:
    first = h.now + MINUTE
    put(h, next_fire_at=first)
    paused = h.engine.pause_schedule("ns", "daily", now=h.now)
    assert paused.spec.paused and paused.updated_at == h.now
    assert h.engine.pause_schedule("ns", "daily", now=h.now + 1).updated_at == h.now  # no change
    h.advance(3 * MINUTE)  # first passes while paused
    assert h.engine.due_schedules(h.now) == []
    resumed = h.engine.resume_schedule("ns", "daily", now=h.now)
    assert not resumed.spec.paused and resumed.next_fire_at == first
    assert [s.name for s in h.engine.due_schedules(h.now)] == ["daily"]
    # The leader's fire of the time passed while paused only moves on.
    assert fire(h, first, h.now + MINUTE) is None
    shown = h.engine.get_schedule("ns", "daily")
    assert (shown.next_fire_at, shown.fired, shown.last_fire_at, shown.last_error) == (
        h.now + MINUTE,
        0,
        None,
        None,
    )
    h.advance(MINUTE)
    assert fire(h, h.now, h.now + MINUTE, "f1") is not None
    assert h.stats().ready == 1
    restored = Engine.restore(h.engine.snapshot())
    assert restored.snapshot() == h.engine.snapshot()
    with pytest.raises(ScheduleNotFound):
        h.engine.resume_schedule("ns", "nope", now=h.now)
