"""Log formats: a write that needs a newer format than the cluster agreed on
is held to the agreed one; members announce what they apply; an agreed
format never goes back; a format newer than this build's stops the replica
before it applies anything more."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import msgpack
import pytest

from kokaq.core import Engine, FailedPrecondition, InvalidArgument
from kokaq.protocol.v1 import kokaq_pb2 as pb
from kokaq.server.log_format import FIRST, LOG_FORMAT, format_needed, in_format
from kokaq.server.replication import (
    AGREE_FORMAT,
    ANNOUNCE,
    Members,
    ReplicatedEngine,
    apply_batch,
)
from tests.integration.nodes import wait_until
from tests.unit.server.test_raft_messages import free_address


def lock(message_id: str = "m1") -> pb.LockRef:
    return pb.LockRef(namespace="ns", queue="q", message_id=message_id, lock_id="l1")


def acks(*results: bytes) -> pb.AckBatchRequest:
    items = [
        pb.AckBatchItem(message_id=f"m{i}", lock_id="l1", result=result or None)
        for i, result in enumerate(results)
    ]
    return pb.AckBatchRequest(namespace="ns", queue="q", items=items)


def test_what_each_format_brings() -> None:
    assert LOG_FORMAT == 4
    pause = pb.QueueRequest(namespace="ns", queue="q")
    assert format_needed("PauseQueue", pause) == format_needed("ResumeQueue", pause) == 3
    schedule = pb.ScheduleRequest(namespace="ns", name="daily")
    for name in ("PutSchedule", "DeleteSchedule", "TriggerSchedule", "FireSchedule"):
        assert format_needed(name, schedule) == 4
    assert format_needed("ReportProgress", pb.ProgressRequest(lock=lock(), progress="1")) == 2
    assert format_needed("AckBatch", acks(b"", b"r")) == 2
    assert format_needed("AckBatch", acks(b"", b"")) == FIRST
    assert format_needed("Refresh", lock()) == FIRST
    assert format_needed("Ack", lock()) == FIRST


def test_in_format_1_a_progress_report_is_a_refresh_and_results_are_not_kept() -> None:
    report = pb.ProgressRequest(lock=lock(), progress='{"step": 2}')
    assert in_format("ReportProgress", report, 1) == ("Refresh", lock())
    settled = acks(b"r0", b"", b"r2")
    name, held = in_format("AckBatch", settled, 1)
    assert name == "AckBatch" and isinstance(held, pb.AckBatchRequest)
    assert [item.HasField("result") for item in held.items] == [False, False, False]
    assert [(i.message_id, i.lock_id) for i in held.items] == [(f"m{n}", "l1") for n in range(3)]
    assert [item.result for item in settled.items] == [b"r0", b"", b"r2"]  # the caller's, untouched
    # What the agreed format holds goes as it is (the same object: no copy).
    assert in_format("AckBatch", settled, 2)[1] is settled
    assert in_format("Ack", lock(), 1)[1] == lock()


@pytest.mark.parametrize("log_format", [1, 2])
def test_pausing_has_no_older_form_and_is_refused(log_format: int) -> None:
    request = pb.QueueRequest(namespace="ns", queue="q")
    for name in ("PauseQueue", "ResumeQueue"):
        with pytest.raises(FailedPrecondition, match=f"log format is {log_format}; {name} needs"):
            in_format(name, request, log_format)
    assert in_format("PauseQueue", request, 3) == ("PauseQueue", request)


def test_schedules_have_no_older_form_and_are_refused() -> None:
    with pytest.raises(FailedPrecondition, match="log format is 3; PutSchedule needs format 4"):
        in_format("PutSchedule", pb.Schedule(namespace="ns", name="daily"), 3)
    request = pb.ScheduleRequest(namespace="ns", name="daily")
    assert in_format("TriggerSchedule", request, 4) == ("TriggerSchedule", request)


def test_a_report_too_large_is_refused_though_format_1_would_not_keep_it() -> None:
    report = pb.ProgressRequest(lock=lock(), progress="x" * 4097)
    with pytest.raises(InvalidArgument) as refused:
        in_format("ReportProgress", report, 1)
    assert refused.value.field == "progress"


def batch(*operations: list[Any]) -> bytes:
    return bytes(msgpack.packb([1_000, list(operations)]))


def test_announcements_of_every_build_are_read() -> None:
    members = Members()
    apply_batch(
        Engine(),
        batch(
            [ANNOUNCE, b"r1:1 g1:1", []],  # the first builds: no HTTP, no format
            [ANNOUNCE, b"r2:1 g2:1 h2:1", []],  # before log formats
            [ANNOUNCE, b"r3:1 g3:1 h3:1 2", []],
        ),
        members,
    )
    assert members.grpc == {"r1:1": "g1:1", "r2:1": "g2:1", "r3:1": "g3:1"}
    assert members.http == {"r2:1": "h2:1", "r3:1": "h3:1"}
    assert members.formats == {"r1:1": 1, "r2:1": 1, "r3:1": 2}
    assert members.supported_by_all(["r3:1"]) == 2
    assert members.supported_by_all(["r2:1", "r3:1"]) == 1
    assert members.supported_by_all(["r3:1", "r4:1"]) == FIRST  # r4 announced nothing yet
    assert members.log_format == FIRST  # announcing agrees on nothing


def test_an_agreed_format_never_goes_back_and_survives_a_dump() -> None:
    members = Members()
    apply_batch(Engine(), batch([AGREE_FORMAT, b"2", []], [AGREE_FORMAT, b"1", []]), members)
    assert members.log_format == 2
    members.announced(b"r1:1 g1:1 h1:1 2")
    restored = Members.from_dump(msgpack.unpackb(msgpack.packb(members.to_dump())))
    assert restored == members
    assert Members.from_dump({"grpc_addresses": {"r": "g"}}) == Members({"r": "g"}, {}, {}, 1)


def test_a_newer_format_stops_the_batch_before_anything_after_it() -> None:
    engine, members, met = Engine(), Members(), list[int]()
    engine.create_namespace("ns", now=1)
    create = pb.QueueRequest(namespace="ns", queue="later").SerializeToString()
    results = apply_batch(
        engine,
        batch([AGREE_FORMAT, b"2", []], [AGREE_FORMAT, b"9", []], ["CreateQueue", create, []]),
        members,
        met.append,
    )
    assert met == [9]
    assert results == [None]  # the first agreement; nothing after the newer one
    assert members.log_format == 2
    assert engine.list_queues("ns") == []


def test_a_replica_that_meets_a_newer_format_applies_nothing_more(tmp_path: Path) -> None:
    met: queue.SimpleQueue[int] = queue.SimpleQueue()
    node = ReplicatedEngine(free_address(), [], str(tmp_path), on_newer_format=met.put)
    answers: queue.SimpleQueue[tuple[Any, int]] = queue.SimpleQueue()

    def submit(name: str, request: bytes) -> Any:
        node.submit(batch([name, request, []]), lambda result, error: answers.put((result, error)))
        result, error = answers.get(timeout=10)
        assert error == 0  # committed
        return result

    try:
        wait_until(node.is_leader)
        created = submit("CreateNamespace", pb.NamespaceRequest(namespace="ns").SerializeToString())
        assert [info.name for info in created] == ["ns"]
        assert submit(AGREE_FORMAT, str(LOG_FORMAT + 1).encode()) == []
        assert met.get(timeout=1) == LOG_FORMAT + 1
        assert node.newer_format == LOG_FORMAT + 1
        queue_request = pb.QueueRequest(namespace="ns", queue="q").SerializeToString()
        assert submit("CreateQueue", queue_request) == []  # committed, not applied
        with node.lock:
            assert node.engine.list_queues("ns") == []
            assert node.members.log_format == FIRST
    finally:
        node.destroy_synchronous()
